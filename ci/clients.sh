#!/usr/bin/env bash
# Real clients against corral, compared with Apache ZooKeeper 3.8 (Debian's zookeeper package):
#   1. differential  ci/clients/differential.py: the same seeded random traffic (raw wire, several
#                    sessions) to ZooKeeper and to corral; replies, stats and watch events compared
#                    field by field, per session, in order.
#   2. zkcli         ci/clients/zkcli_compare.py: one zkCli.sh session, both transcripts compared.
#   3. java-client   ci/clients/java_client.py: the official Java client (async pipelining,
#                    watches, multi, ...), compiled with javac, against both servers.
#   4. java-secure   ci/clients/java_secure.py: the Java client over TLS (PKCS12 and PEM client
#                    stores, x509 ACLs) and SASL DIGEST-MD5 (JAAS), good and bad credentials.
# Known, reported differences are listed with their reasons in ci/clients/known-differences.txt.
#
#   ci/clients.sh                  all four (CORRAL_BIN overrides target/release/corral)
#   CLIENTS_SEEDS="7 8" CLIENTS_STEPS=5000 ci/clients.sh    other seeds / lengths
# Logs: target/clients-run/<test>/ (each server's log, transcripts, frames on a divergence).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/target/clients-run"

fail() {
    echo "clients: $*" >&2
    exit 1
}

command -v java >/dev/null || fail "java is not installed (ci/test.sh installs the zookeeper package and a JDK)"
command -v javac >/dev/null || fail "javac is not installed"
[ -f /usr/share/java/zookeeper.jar ] || fail "/usr/share/java/zookeeper.jar missing (apt-get install zookeeper)"
[ -x /usr/share/zookeeper/bin/zkCli.sh ] || fail "/usr/share/zookeeper/bin/zkCli.sh missing (apt-get install zookeeper)"

# The tests need only Python's standard library: the kazoo venv when there is one, else python3.
py="$root/target/kazoo-venv/bin/python"
[ -x "$py" ] || py=$(command -v python3) || fail "python3 is not installed"

if [ -z "${CORRAL_BIN:-}" ]; then
    if [ ! -x target/release/corral ]; then
        echo "clients: building target/release/corral"
        cargo build --release --locked -p corral-server || fail "cargo build failed"
    fi
    export CORRAL_BIN="$root/target/release/corral"
fi
[ -x "$CORRAL_BIN" ] || fail "no corral binary at $CORRAL_BIN"

rm -rf "$out"
mkdir -p "$out"
seeds=${CLIENTS_SEEDS:-"1 2 3"}
steps=${CLIENTS_STEPS:-5000}
failed=()
t0=$(date +%s)

run() {
    local name=$1
    shift
    local t
    t=$(date +%s)
    echo "==> clients/$name"
    # Every test bounds its own waits; this outer limit only guards against the unforeseen.
    if timeout 300 "$@"; then
        echo "<== clients/$name passed in $(($(date +%s) - t))s"
    else
        echo "<== clients/$name FAILED in $(($(date +%s) - t))s"
        failed+=("$name")
    fi
}

for seed in $seeds; do
    run "differential seed $seed" "$py" ci/clients/differential.py --seed "$seed" --steps "$steps" \
        --run-dir "$out/differential-$seed"
done
run zkcli "$py" ci/clients/zkcli_compare.py --run-dir "$out/zkcli"
run java-client "$py" ci/clients/java_client.py --run-dir "$out/java"
run java-secure "$py" ci/clients/java_secure.py --run-dir "$out/java-secure"

echo "clients: $(($(date +%s) - t0))s in all; logs in $out"
if [ ${#failed[@]} -gt 0 ]; then
    echo "clients: FAILED: ${failed[*]}"
    exit 1
fi
echo "clients: all passed"
