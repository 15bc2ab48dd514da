#!/usr/bin/env bash
# The Debian package, installed and run as its service would run it: builds it
# (packaging/deb/build.sh), installs it on this machine with dpkg, checks what it installed
# (the corral user, its directories, the conffiles, the systemd unit verified by
# systemd-analyze), runs the unit's ExecStart as the unit's User — without systemd, which CI
# machines do not run — on loopback ports given with -D, asks it ruok and mntr, stops it with
# SIGTERM (it must exit 0), then removes and purges the package and checks what stays.
# Needs root (CI runs as root); refuses to run where a corral package is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs a package)"
if dpkg -s corral >/dev/null 2>&1; then
    fail "a corral package is installed on this machine already; not touching it"
fi
user_existed=0
getent passwd corral >/dev/null && user_existed=1

cargo build --release --locked -p corral-server
deb=$(bash packaging/deb/build.sh)
echo "built $deb ($(stat -c %s "$deb") bytes)"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    dpkg -P corral >/dev/null 2>&1 || true
    rm -rf /var/lib/corral /var/log/corral "$work"
    if [ "$user_existed" = 0 ] && getent passwd corral >/dev/null; then
        userdel corral 2>/dev/null || true
        groupdel corral 2>/dev/null || true
    fi
}
trap cleanup EXIT

DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"

# What the package installed.
[ -x /usr/bin/corral ] || fail "no /usr/bin/corral"
IFS=: read -r _ _ _ _ _ home shell < <(getent passwd corral) || fail "no corral user"
[ "$home" = /var/lib/corral ] || fail "corral's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "corral's shell is $shell"
for d in /var/lib/corral /var/log/corral; do
    [ "$(stat -c '%U:%G %a' "$d")" = "corral:corral 750" ] || fail "$d: $(stat -c '%U:%G %a' "$d")"
done
conffiles=$(dpkg-query -W -f='${Conffiles}' corral)
for f in /etc/corral/zoo.cfg /etc/default/corral; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done
unit=/lib/systemd/system/corral.service
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze: $out"
    [ -z "$out" ] || fail "systemd-analyze: $out"
fi

# Start it as the unit does.
run_as=$(sed -n 's/^User=//p' "$unit")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
workdir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
opts="-D clientPortAddress=127.0.0.1 -D clientPort=$port -D zookeeper.admin.serverAddress=127.0.0.1 -D zookeeper.admin.serverPort=$admin"
cmd=${exec_start//\$CORRAL_OPTS/$opts}
echo "starting as $run_as in $workdir: $cmd"
# setpriv execs the command (runuser would stay as its parent and answer SIGTERM itself).
(cd "$workdir" && exec setpriv --reuid "$run_as" --regid "$run_as" --init-groups \
    env NO_COLOR=1 $cmd) >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    /usr/bin/corral ruok "127.0.0.1:$port" --timeout 1 >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; fail "the service exited"; }
    sleep 0.1
done
[ "$(/usr/bin/corral ruok "127.0.0.1:$port")" = imok ] || { cat "$work/server.log"; fail "no imok"; }
/usr/bin/corral mntr "127.0.0.1:$port" | grep -q $'^zk_server_state\tstandalone$' || fail "mntr"
exec 3<>"/dev/tcp/127.0.0.1/$admin"
printf 'GET /commands/ruok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
grep -q '"command" : "ruok"' <&3 || fail "the AdminServer did not answer"
exec 3<&-
[ -n "$(find /var/lib/corral -mindepth 1 -type f)" ] || fail "nothing written in /var/lib/corral"
[ -z "$(find /var/lib/corral ! -user "$run_as")" ] || fail "files in /var/lib/corral not $run_as's"
if grep -q $'\e\\[' "$work/server.log"; then fail "colour codes in a log file"; fi
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { cat "$work/server.log"; fail "exit status $status on SIGTERM"; }

# Remove keeps the configuration; purge removes it and the logs, keeps the data.
dpkg -r corral >/dev/null
[ ! -e /usr/bin/corral ] || fail "remove left /usr/bin/corral"
[ -f /etc/corral/zoo.cfg ] || fail "remove took the configuration"
dpkg -P corral >/dev/null
[ ! -e /etc/corral ] || fail "purge left /etc/corral"
[ ! -e /var/log/corral ] || fail "purge left /var/log/corral"
[ -n "$(find /var/lib/corral -mindepth 1 -type f)" ] || fail "purge took the data"
echo "package check: installed, ran as $run_as (ruok, mntr, AdminServer), stopped cleanly, removed and purged"
