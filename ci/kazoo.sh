#!/usr/bin/env bash
# kazoo's own test suite (kazoo 2.11.0, `pytest --pyargs kazoo.tests`) against a standalone
# corral, through the pytest plugin in ci/kazoo/corral_kazoo.py; every test must pass except
# those listed, with their reason, in ci/kazoo/expected-failures.txt.
#
#   ci/kazoo.sh                       against target/release/corral (built if missing)
#   ci/kazoo.sh --against-zookeeper   against Apache ZooKeeper 3.8 (Debian's zookeeper package)
#   ci/kazoo.sh --ensemble [...]      the same against a 3-server ensemble (kazoo's harness,
#                                     ZOOKEEPER_CLUSTER_SIZE=3; the tests allowed to fail are
#                                     in ci/kazoo/expected-failures-ensemble.txt)
#   ci/kazoo.sh --mixed               against a mixed ensemble: kazoo's 3 servers, server 1
#                                     corral and servers 2 and 3 Apache ZooKeeper 3.8
#                                     (ci/kazoo/expected-failures-mixed.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
expected="$root/ci/kazoo/expected-failures.txt"
out="$root/target/kazoo-run"
against_zookeeper=
for arg in "$@"; do
    case "$arg" in
        --against-zookeeper) against_zookeeper=1 ;;
        --ensemble)
            export ZOOKEEPER_CLUSTER_SIZE=3
            expected="$root/ci/kazoo/expected-failures-ensemble.txt"
            out="$root/target/kazoo-run-ensemble" ;;
        --mixed)
            export ZOOKEEPER_CLUSTER_SIZE=3 CORRAL_MYIDS=1
            expected="$root/ci/kazoo/expected-failures-mixed.txt"
            out="$root/target/kazoo-run-mixed" ;;
        *) echo "usage: ci/kazoo.sh [--against-zookeeper] [--ensemble] [--mixed]" >&2; exit 2 ;;
    esac
done
venv="$root/target/kazoo-venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r ci/kazoo/requirements.txt

rm -rf "$out"
mkdir -p "$out"
export PYTHONPATH="$root/ci/kazoo"
# The classpath of Apache ZooKeeper servers (all of them, or those of a mixed ensemble).
zk_classpath=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/servlet-api.jar:$(ls /usr/share/java/netty-{all,buffer,codec,common,handler,resolver,transport,transport-native-unix-common,transport-native-epoll}.jar | tr '\n' ':')
if [ -n "$against_zookeeper" ]; then
    unset CORRAL_BIN CORRAL_MYIDS
    export ZOOKEEPER_CLASSPATH="$zk_classpath"
else
    [ -z "${CORRAL_MYIDS:-}" ] || export ZOOKEEPER_CLASSPATH="$zk_classpath"
    [ -x target/release/corral ] || cargo build --release --locked -p corral-server
    export CORRAL_BIN="$root/target/release/corral"
fi
# kazoo's Kerberos tests (TestSASLGSSAPIAuthentication) run against a KDC started here, as
# kazoo's own CI does: realm KAZOOTEST.ORG, principals client and zookeeper/127.0.0.1, their
# keytabs in $KRB5_TEST_ENV, the harness handing the servers a Krb5LoginModule JAAS section.
kdc="$out/kdc"
if bash ci/kdc.sh "$kdc" KAZOOTEST.ORG client:client.keytab zookeeper/127.0.0.1:server.keytab; then
    export KRB5_TEST_ENV="$kdc" KRB5_CONFIG="$kdc/krb5.conf" KRB5CCNAME="FILE:$kdc/ccache"
    trap 'kill $(cat "$kdc/kdc.pid") 2> /dev/null || true' EXIT
else
    echo "no KDC: kazoo's Kerberos tests will be skipped"
fi
# Every corral server's log is kept here, each test's start marked in it.
export CORRAL_LOG_DIR="$out/logs"
mkdir -p "$CORRAL_LOG_DIR"
cd "$out"
# Bounded: kazoo's harness restarts servers between tests; pytest-timeout stops any test that
# hangs, and the whole run has an outer limit.
set +e
timeout 1800 "$venv/bin/python" -m pytest -p corral_kazoo --pyargs kazoo.tests -q \
    --timeout=180 -p no:cacheprovider --junitxml="$out/junit.xml" > "$out/pytest.log" 2>&1
status=$?
set -e
tail -n 15 "$out/pytest.log" | grep -E "passed|failed|error" || true
if [ ! -f "$out/junit.xml" ]; then
    echo "kazoo run produced no results (pytest exit $status); see $out/pytest.log"
    exit 1
fi
"$venv/bin/python" "$root/ci/kazoo/check_junit.py" "$out/junit.xml" "$expected" 450 "$CORRAL_LOG_DIR"
