#!/usr/bin/env bash
# The Debian package, installed and run as its service would run it: builds it
# (packaging/deb/build.sh), installs it on this machine with dpkg, checks what it installed
# (the corral user, its directories, the conffiles, the AdminServer on loopback in zoo.cfg, the
# logrotate configuration, the systemd unit verified by systemd-analyze and enabled), runs the
# unit's ExecStart as the unit's User — without systemd, which CI machines do not run — on
# loopback ports given with -D, asks it ruok and mntr, stops it with SIGTERM (it must exit 0),
# then upgrades, removes, reinstalls and purges the package and checks what stays and whether
# the service is enabled. Needs root (CI runs as root); refuses to run where a corral package is
# already installed, or /var/lib/corral, /var/log/corral or the service's enablement exist (the
# cleanup removes them).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it installs a package)"
if dpkg -s corral >/dev/null 2>&1; then
    fail "a corral package is installed on this machine already; not touching it"
fi
# The cleanup removes these (dpkg -P the last two): only when this run made them — otherwise
# they are someone's data or logs, or a corral package's leftovers that would also spoil the
# checks of the service's enablement below.
wants=/etc/systemd/system/multi-user.target.wants/corral.service
dsh_state=/var/lib/systemd/deb-systemd-helper-enabled/corral.service.dsh-also
for d in /var/lib/corral /var/log/corral "$wants" "$dsh_state"; do
    if [ -e "$d" ] || [ -L "$d" ]; then
        fail "$d exists already; not touching it"
    fi
done
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
    # Made by this run: it refuses to start where they exist.
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
for f in /etc/corral/zoo.cfg /etc/default/corral /etc/logrotate.d/corral; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done
# The AdminServer (whose snapshot command streams the database) is on loopback unless opened.
grep -qx 'admin.serverAddress=127.0.0.1' /etc/corral/zoo.cfg \
    || fail "/etc/corral/zoo.cfg does not keep the AdminServer on 127.0.0.1"
[ -f /etc/logrotate.d/corral ] || fail "no /etc/logrotate.d/corral"
if command -v logrotate >/dev/null; then
    # -d: parse and say what would be done, doing nothing (the state file is not written).
    # Some mistakes (an unknown option) are printed as errors with exit status 0.
    out=$(logrotate -d --state "$work/logrotate.state" /etc/logrotate.d/corral 2>&1) \
        || fail "logrotate -d: $out"
    if grep -q '^error:' <<<"$out"; then fail "logrotate -d: $out"; fi
fi
unit=/lib/systemd/system/corral.service
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze: $out"
    [ -z "$out" ] || fail "systemd-analyze: $out"
fi
# Enabled by deb-systemd-helper, which makes the link itself where systemd is not running.
[ -L "$wants" ] || fail "the install did not enable the service (no $wants)"

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

# An upgrade (the same package again: postinst configure with the installed version) keeps a
# service the administrator disabled (here as systemctl disable does it) disabled.
rm "$wants"
dpkg -i "$deb" >/dev/null
[ ! -L "$wants" ] || fail "an upgrade enabled a disabled service"

# Remove keeps the configuration and disables the service.
dpkg -r corral >/dev/null
[ ! -e /usr/bin/corral ] || fail "remove left /usr/bin/corral"
[ -f /etc/corral/zoo.cfg ] || fail "remove took the configuration"
[ ! -L "$wants" ] || fail "remove left $wants"
[ ! -e "$dsh_state" ] || fail "remove left $dsh_state"
# An install after remove (config-files state: postinst configure gets the old version too) is a
# first install: enabled again.
dpkg -i "$deb" >/dev/null
[ -x /usr/bin/corral ] || fail "the reinstall did not install /usr/bin/corral"
[ -L "$wants" ] || fail "an install after remove did not enable the service (no $wants)"

# Purge removes the configuration, the logs and the enablement, keeps the data.
dpkg -P corral >/dev/null
[ ! -e /etc/corral ] || fail "purge left /etc/corral"
[ ! -e /etc/logrotate.d/corral ] || fail "purge left /etc/logrotate.d/corral"
[ ! -e /var/log/corral ] || fail "purge left /var/log/corral"
[ ! -L "$wants" ] || fail "purge left $wants"
[ ! -e "$dsh_state" ] || fail "purge left $dsh_state"
[ -n "$(find /var/lib/corral -mindepth 1 -type f)" ] || fail "purge took the data"
echo "package check: installed, ran as $run_as (ruok, mntr, AdminServer), stopped cleanly," \
    "upgraded, removed, reinstalled and purged"
