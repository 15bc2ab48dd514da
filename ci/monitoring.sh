#!/usr/bin/env bash
# The monitoring check: a real Prometheus (Debian's prometheus package) scrapes a 3-server
# corral ensemble under a bounded load, and every query of the Grafana dashboard
# ops/grafana/corral.json must return data (ci/monitoring_check.py, after its own self-test).
#
#   ci/monitoring.sh      uses target/release/corral (CORRAL_BIN overrides); builds nothing
#
# Needs: prometheus (installed with apt-get when missing, as root or through sudo), python3,
# and kazoo for the load: the venv of ci/kazoo.sh (target/kazoo-venv) when it has kazoo, else
# target/monitoring-venv with the kazoo version ci/kazoo/requirements.txt pins.
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped by its
# PID on exit. Logs: target/monitoring-run/. MONITORING_OPS (default 2000) writes per writer,
# MONITORING_LOAD_SECS (default 10) the seconds they are spread over.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)
corral=${CORRAL_BIN:-$root/target/release/corral}
dashboard=ops/grafana/corral.json
out="$root/target/monitoring-run"
ops=${MONITORING_OPS:-2000}
load_secs=${MONITORING_LOAD_SECS:-10}

fail() {
    echo "monitoring: FAILED: $*" >&2
    exit 1
}

[ -x "$corral" ] || fail "no corral binary at $corral (cargo build --release -p corral-server)"
[ -f "$dashboard" ] || fail "no $dashboard"
command -v python3 > /dev/null || fail "python3 is not installed"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
    echo "monitoring: installing $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
        > /dev/null
}

# Prometheus: the binary only; it is started below with a configuration of its own.
prometheus=$(command -v prometheus || true)
if [ -z "$prometheus" ]; then
    apt_install prometheus
    prometheus=$(command -v prometheus || echo /usr/bin/prometheus)
fi
[ -x "$prometheus" ] || fail "no prometheus binary after installing the package"

# kazoo, for the load.
py=""
for cand in "$root/target/kazoo-venv/bin/python" "$root/target/monitoring-venv/bin/python"; do
    if [ -x "$cand" ] && "$cand" -c "import kazoo" 2> /dev/null; then
        py=$cand
        break
    fi
done
if [ -z "$py" ]; then
    venv="$root/target/monitoring-venv"
    kazoo_version=$(sed -n 's/^kazoo\(\[[a-z,]*\]\)\?==\([0-9.]*\).*/\2/p' \
        ci/kazoo/requirements.txt)
    [ -n "$kazoo_version" ] || fail "no kazoo version pinned in ci/kazoo/requirements.txt"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2> /dev/null; then
        rm -rf "$venv"
        apt_install python3-venv
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "kazoo==$kazoo_version"
    py="$venv/bin/python"
fi

work=$(mktemp -d /tmp/corral-monitoring.XXXXXX)
pids=()
cleanup() {
    local status=$?
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    rm -rf "$work"
    if [ "$status" -ne 0 ]; then
        echo "monitoring: FAILED after $(($(date +%s) - t0))s; logs in $out" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$out"
mkdir -p "$out"

# Free loopback ports (bound to port 0, then released): per server client, quorum, election
# and metrics ports, and one for Prometheus.
read -r -a port <<< "$(python3 -c '
import socket
socks = [socket.socket() for _ in range(13)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
')"
cport=("${port[@]:0:3}")
qport=("${port[@]:3:3}")
eport=("${port[@]:6:3}")
mport=("${port[@]:9:3}")
pport=${port[12]}
prom_url="http://127.0.0.1:$pport"

# A 3-server ensemble, the Prometheus endpoint on each member.
provider=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
for i in 1 2 3; do
    mkdir -p "$work/s$i/data"
    echo "$i" > "$work/s$i/data/myid"
    {
        echo "tickTime=2000"
        echo "initLimit=10"
        echo "syncLimit=5"
        echo "dataDir=$work/s$i/data"
        echo "clientPort=${cport[i - 1]}"
        echo "clientPortAddress=127.0.0.1"
        echo "admin.enableServer=false"
        echo "4lw.commands.whitelist=*"
        echo "metricsProvider.className=$provider"
        echo "metricsProvider.httpHost=127.0.0.1"
        echo "metricsProvider.httpPort=${mport[i - 1]}"
        for j in 1 2 3; do
            echo "server.$j=127.0.0.1:${qport[j - 1]}:${eport[j - 1]};127.0.0.1:${cport[j - 1]}"
        done
    } > "$work/s$i/zoo.cfg"
    cp "$work/s$i/zoo.cfg" "$out/zoo-$i.cfg"
    NO_COLOR=1 "$corral" "$work/s$i/zoo.cfg" > "$out/corral-$i.log" 2>&1 &
    pids+=($!)
done

# A four-letter word's answer ("" when the server does not answer).
fourlw() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf %s "$2" >&3; cat <&3' _ "$1" "$2" \
        2> /dev/null || true
}
# GET /metrics ("" when nothing answers).
scrape() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"
        printf "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
        cat <&3' _ "$1" 2> /dev/null || true
}

deadline=$(($(date +%s) + 30))
modes=()
for i in 1 2 3; do
    while :; do
        kill -0 "${pids[i - 1]}" 2> /dev/null || {
            tail -n 5 "$out/corral-$i.log" >&2
            fail "corral server $i exited (log: $out/corral-$i.log)"
        }
        mode=$(fourlw "${cport[i - 1]}" srvr | sed -n 's/^Mode: //p')
        case "$mode" in leader | follower) break ;; esac
        [ "$(date +%s)" -lt "$deadline" ] ||
            fail "server $i not serving after 30s (log: $out/corral-$i.log)"
        sleep 0.2
    done
    modes+=("127.0.0.1:${cport[i - 1]} $mode")
    if ! scrape "${mport[i - 1]}" | grep -q '^znode_count '; then
        grep -i metricsProvider "$out/corral-$i.log" | head -n 3 >&2 || true
        fail "server $i serves no /metrics on 127.0.0.1:${mport[i - 1]}" \
            "($corral predates the Prometheus endpoint? rebuild it)"
    fi
done
echo "monitoring: ensemble serving: $(IFS=,; echo "${modes[*]}")"

# Prometheus, scraping the three every second.
cat > "$work/prometheus.yml" << EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: corral
    static_configs:
      - targets: ['127.0.0.1:${mport[0]}', '127.0.0.1:${mport[1]}', '127.0.0.1:${mport[2]}']
EOF
cp "$work/prometheus.yml" "$out/prometheus.yml"
"$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus-data" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn > "$out/prometheus.log" 2>&1 &
pids+=($!)
prom_deadline=$(($(date +%s) + 20))
ready="import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/-/ready', timeout=1)"
until python3 -c "$ready" "$prom_url" 2> /dev/null; do
    kill -0 "${pids[3]}" 2> /dev/null || fail "prometheus exited (log: $out/prometheus.log)"
    [ "$(date +%s)" -lt "$prom_deadline" ] || fail "prometheus not ready after 20s"
    sleep 0.2
done
prom_version=$("$prometheus" --version 2>&1 | head -n 1 | awk '{print $3}')
echo "monitoring: prometheus $prom_version at $prom_url"

# Prometheus has scraped every member (it takes the first targets a few seconds after start).
python3 ci/monitoring_check.py "$dashboard" --prometheus "$prom_url" --targets 3 --wait 30 \
    --wait-only > "$out/targets.log" ||
    { cat "$out/targets.log"; fail "prometheus does not scrape the three members"; }

# The load: three writers, one per member, each $ops writes (creates, then setData on the
# same nodes; pipelined, up to 32 in flight) and a read for every third, with ephemerals and
# watches; spread over about $load_secs s so that Prometheus sees it; bounded by count and 60 s.
load_t0=$(date +%s)
load_args=("$ops" "$load_secs" "${cport[@]}")
timeout --foreground 90 "$py" - "${load_args[@]}" << 'EOF' || fail "the load failed (above)"
import sys
import threading
import time

from kazoo.client import KazooClient

ops = int(sys.argv[1])
spread = float(sys.argv[2])
ports = sys.argv[3:]
start = time.monotonic()
deadline = start + 60
done = {}
errors = []


def writer(i, port):
    zk = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
    try:
        zk.start(timeout=20)
        base = f"/monitoring/w{i}"
        zk.ensure_path(base)
        for k in range(10):
            zk.create(f"{base}/session-{k}", b"", ephemeral=True)
            zk.exists(f"{base}/watched-{k}", watch=lambda event: None)
        half = ops // 2
        inflight = []
        n = 0
        for k in range(ops):
            if time.monotonic() > deadline:
                break
            if k < half:
                inflight.append(zk.create_async(f"{base}/n{k}", b"x" * 100))
            else:
                inflight.append(zk.set_async(f"{base}/n{k - half}", b"y" * (k % 300)))
            if k % 3 == 0:
                inflight.append(zk.get_children_async(base) if k % 2 else zk.exists_async(base))
            if len(inflight) >= 32:
                for r in inflight:
                    r.get(timeout=30)
                n += len(inflight)
                inflight = []
                # Paced: request k not before start + spread * k / ops.
                ahead = start + spread * k / ops - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        for r in inflight:
            r.get(timeout=30)
        n += len(inflight)
        done[i] = n
    except Exception as e:  # reported below; the run fails
        errors.append(f"writer {i} (port {port}): {type(e).__name__}: {e}")
    finally:
        zk.stop()
        zk.close()


threads = [
    threading.Thread(target=writer, args=(i, p), daemon=True) for i, p in enumerate(ports, 1)
]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors or len(done) != len(threads):
    print("load: FAILED: " + ("; ".join(errors) or f"{len(done)} of {len(threads)} writers done"))
    sys.exit(1)
print(f"load: {len(threads)} writers, {sum(done.values())} requests answered")
EOF
echo "monitoring: load done in $(($(date +%s) - load_t0))s"

python3 ci/monitoring_check.py --self-test "$dashboard" --prometheus "$prom_url" \
    > "$out/self-test.log" || { cat "$out/self-test.log"; fail "the checker's self-test"; }
tail -n 1 "$out/self-test.log"
python3 ci/monitoring_check.py "$dashboard" --prometheus "$prom_url" --targets 3 --wait 30 -v \
    > "$out/check.log" || { cat "$out/check.log"; fail "dashboard queries"; }
grep -v '^ *[0-9]* series' "$out/check.log"
echo "monitoring: passed in $(($(date +%s) - t0))s (query list: $out/check.log)"
