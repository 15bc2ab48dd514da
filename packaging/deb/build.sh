#!/usr/bin/env bash
# Builds the Debian package target/debian/corral_<version>_<arch>.deb from the release
# binary (built first if it is missing): /usr/bin/corral, the systemd unit, /etc/corral/zoo.cfg,
# /etc/default/corral and /etc/logrotate.d/corral (conffiles), the maintainer scripts that make
# the corral user and its directories and enable the service, and the docs. Plain dpkg-deb:
# nothing to install beyond Debian's dpkg.
# Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
[ -x target/release/corral ] || cargo build --release --locked -p corral-server >&2

stage=target/debian/corral_${version}_${arch}
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
install -D -m 0755 target/release/corral "$stage/usr/bin/corral"
strip --strip-debug "$stage/usr/bin/corral"
install -D -m 0644 packaging/deb/corral.service "$stage/lib/systemd/system/corral.service"
install -D -m 0644 packaging/deb/zoo.cfg "$stage/etc/corral/zoo.cfg"
install -D -m 0644 packaging/deb/default "$stage/etc/default/corral"
install -D -m 0644 packaging/deb/logrotate "$stage/etc/logrotate.d/corral"
doc="$stage/usr/share/doc/corral"
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 docs/operations.md docs/compatibility.md "$doc/"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: corral

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
for s in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$s" "$stage/DEBIAN/$s"
done
printf '%s\n' /etc/corral/zoo.cfg /etc/default/corral /etc/logrotate.d/corral \
    > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: corral
Version: ${version}
Architecture: ${arch}
Maintainer: Corral maintainers <maintainers@corral.invalid>
Installed-Size: ${size}
Depends: adduser, libc6 (>= 2.34)
Section: net
Priority: optional
Description: ZooKeeper-compatible coordination service
 Corral serves Apache ZooKeeper's client protocol and joins ensembles with ZooKeeper
 servers. It reads ZooKeeper's zoo.cfg, answers the four-letter words and the
 AdminServer's HTTP commands, and exports Prometheus metrics.
 .
 The corral service runs /usr/bin/corral /etc/corral/zoo.cfg as the corral user, with its
 data in /var/lib/corral.
CONTROL
out=target/debian/corral_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >&2
echo "$out"
