#!/bin/bash
# usage: capture.sh            (env: ZK_PORT, default 22181; JAVA, default java)
#
# Starts a standalone Apache ZooKeeper 3.8.0 (Debian /usr/share/java/zookeeper.jar) on
# 127.0.0.1:$ZK_PORT with audit.enable=true and a fresh temporary dataDir, runs capture.py
# against it, stops the server with SIGTERM (by PID), and extracts the audit-log lines:
#
#   audit.txt         "<LEVEL> <message>" per audit line, in order (message verbatim, TABs kept)
#   audit-raw.txt     the same lines exactly as slf4j-simple printed them (with thread name)
#   capture-ops.txt   stdout of capture.py (which step did what, session ids of this run)
#
# All files are written next to this script.  Only loopback is used; only the ZooKeeper
# JVM started here is ever signalled (by its PID).  Every wait is bounded.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${ZK_PORT:-22181}
JAVA=${JAVA:-java}
CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
W=$(mktemp -d /tmp/zkaudit.XXXXXX)
ZKPID=

cleanup() {
  if [ -n "$ZKPID" ] && kill -0 "$ZKPID" 2>/dev/null; then
    kill -KILL "$ZKPID" 2>/dev/null
  fi
}
trap cleanup EXIT

port_open() {
  python3 - "$PORT" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
s.close()
EOF
}

if port_open; then
  echo "127.0.0.1:$PORT is already in use; set ZK_PORT" >&2
  exit 1
fi

mkdir -p "$W/data"
cat > "$W/zoo.cfg" <<EOF
tickTime=2000
dataDir=$W/data
clientPort=$PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
audit.enable=true
EOF

$JAVA -cp "$CP" org.apache.zookeeper.version.VersionInfoMain > "$W/version.txt" 2>&1
echo "version: $(cat "$W/version.txt")"

"$JAVA" -Duser.timezone=UTC -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
  -cp "$CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$W/zoo.cfg" \
  > "$W/server.out" 2> "$W/server.log" < /dev/null &
ZKPID=$!
echo "zookeeper pid $ZKPID, work dir $W"

# wait (<= 30 s) for the serverStart audit line (logged just after the client port is
# bound), so that no client request can be audited before it; then check the port once
for _ in $(seq 1 60); do
  grep -q 'operation=serverStart' "$W/server.log" && break
  kill -0 "$ZKPID" 2>/dev/null || { echo "zookeeper exited early" >&2; cat "$W/server.log" >&2; exit 1; }
  sleep 0.5
done
grep -q 'operation=serverStart' "$W/server.log" || { echo "no serverStart audit line within 30 s" >&2; exit 1; }
port_open || { echo "zookeeper is not listening on 127.0.0.1:$PORT" >&2; exit 1; }

timeout 90 python3 "$HERE/capture.py" "127.0.0.1:$PORT" > "$W/ops.txt" 2> "$W/ops.err"
RC=$?
cat "$W/ops.txt"
[ $RC -eq 0 ] || { echo "capture.py failed (rc=$RC)" >&2; cat "$W/ops.err" >&2; }

# stop with SIGTERM (shutdown hooks run), wait <= 20 s, then SIGKILL
kill -TERM "$ZKPID"
for _ in $(seq 1 40); do
  kill -0 "$ZKPID" 2>/dev/null || break
  sleep 0.5
done
if kill -0 "$ZKPID" 2>/dev/null; then
  echo "zookeeper still alive 20 s after SIGTERM; SIGKILL" >&2
  kill -KILL "$ZKPID"
fi
wait "$ZKPID" 2>/dev/null
echo "zookeeper exit status $?"
ZKPID=

[ $RC -eq 0 ] || exit 1

python3 - "$W/server.log" "$HERE" <<'EOF'
import re, sys
log, out = sys.argv[1], sys.argv[2]
pat = re.compile(r"^\[(.*)\] ([A-Z]+) org\.apache\.zookeeper\.audit\.Slf4jAuditLogger - (.*)$")
raw, lines = [], []
with open(log, encoding="utf-8", newline="\n") as f:
    for line in f:
        line = line.rstrip("\n")
        m = pat.match(line)
        if m:
            raw.append(line)
            lines.append("%s %s" % (m.group(2), m.group(3)))
with open(out + "/audit-raw.txt", "w", encoding="utf-8", newline="\n") as f:
    f.write("".join(l + "\n" for l in raw))
with open(out + "/audit.txt", "w", encoding="utf-8", newline="\n") as f:
    f.write("".join(l + "\n" for l in lines))
print("%d audit lines" % len(lines))
EOF
cp "$W/ops.txt" "$HERE/capture-ops.txt"
echo "server log kept in $W/server.log"
