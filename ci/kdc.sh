#!/usr/bin/env bash
# Starts a throw-away MIT Kerberos KDC for tests (Debian packages krb5-kdc, krb5-admin-server,
# krb5-user), on 127.0.0.1 and a free port, with its database, config and keytabs in DIR:
#
#   ci/kdc.sh DIR REALM [PRINCIPAL:KEYTAB ...]
#
# writes DIR/krb5.conf (point KRB5_CONFIG, or java.security.krb5.conf, at it), creates each
# PRINCIPAL (without @REALM) with a random key and exports it to DIR/KEYTAB, starts krb5kdc
# (its PID in DIR/kdc.pid, its log in DIR/kdc/kdc.log) and returns. Stop it with
# `kill $(cat DIR/kdc.pid)`. Exit status 3 when the Kerberos programs are not installed.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: ci/kdc.sh DIR REALM [PRINCIPAL:KEYTAB ...]" >&2
    exit 2
fi
dir=$1
realm=$2
shift 2
for tool in krb5kdc kdb5_util kadmin.local kinit; do
    if ! command -v "$tool" > /dev/null; then
        echo "ci/kdc.sh: $tool is not installed (apt-get install krb5-kdc krb5-admin-server krb5-user)" >&2
        exit 3
    fi
done
mkdir -p "$dir/kdc"
dir=$(cd "$dir" && pwd)
# A port free for both UDP and TCP on 127.0.0.1.
port=$(python3 - <<'EOF'
import socket
for _ in range(100):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()
EOF
)
cat > "$dir/krb5.conf" <<EOF
[logging]
 default = FILE:$dir/kdc/libs.log
 kdc = FILE:$dir/kdc/kdc.log

[libdefaults]
 default_realm = $realm
 dns_lookup_realm = false
 dns_lookup_kdc = false
 rdns = false
 ticket_lifetime = 24h
 forwardable = true
 udp_preference_limit = 1
 default_tkt_enctypes = aes128-cts-hmac-sha1-96
 default_tgs_enctypes = aes128-cts-hmac-sha1-96
 permitted_enctypes = aes128-cts-hmac-sha1-96

[realms]
 $realm = {
  database_name = $dir/kdc/principal
  key_stash_file = $dir/kdc/stash
  kdc = 127.0.0.1:$port
  kdc_listen = 127.0.0.1:$port
  kdc_tcp_listen = 127.0.0.1:$port
  kdc_ports = $port
  kdc_tcp_ports = $port
 }
EOF
export KRB5_CONFIG="$dir/krb5.conf" KRB5_KDC_PROFILE="$dir/krb5.conf"
# The master password only guards this throw-away database.
kdb5_util -r "$realm" create -s -P "corral-test-kdc" > "$dir/kdc/create.log" 2>&1
for spec in "$@"; do
    principal=${spec%%:*}
    keytab=${spec#*:}
    kadmin.local -r "$realm" -q "add_principal -randkey $principal@$realm" > /dev/null
    kadmin.local -r "$realm" -q "ktadd -k $dir/$keytab -norandkey $principal@$realm" > /dev/null
done
krb5kdc -r "$realm" -P "$dir/kdc.pid" -p "$port"
for _ in $(seq 50); do
    [ -s "$dir/kdc.pid" ] && break
    sleep 0.1
done
echo "KDC for $realm on 127.0.0.1:$port (pid $(cat "$dir/kdc.pid")), config $dir/krb5.conf"
