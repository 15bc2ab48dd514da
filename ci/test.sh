#!/usr/bin/env bash
# The one entry point that developers and CI both run (README: "run the whole test suite").
# It installs what the tests need, then runs every check in order and stops at the first
# failure: formatting, clippy with warnings denied, all tests, docs with warnings denied, and
# the benchmarks compiled and run once each in test mode.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/lib.sh

# Apache ZooKeeper 3.8: the reference for comparisons, and real clients (zkCli, the Java client).
# nftables, iproute2, e2fsprogs, util-linux: the chaos harness's partitions, namespaces and
# filesystems.
# krb5-kdc, krb5-admin-server, krb5-user: the KDC the Kerberos tests start (ci/kdc.sh), and
# kinit; libkrb5-dev and python3-dev: kazoo's kerberos module is built against them. The
# server itself needs only the GSS-API library (libgssapi-krb5-2), loaded when Kerberos is
# configured.
CI_APT_PACKAGES="zookeeper openjdk-17-jdk-headless nftables iproute2 e2fsprogs util-linux krb5-kdc krb5-admin-server krb5-user libkrb5-dev python3-dev" install_deps
# With the packages above, a test that needs Kerberos fails rather than skips without it.
export CORRAL_REQUIRE_KERBEROS=1

step "format"        cargo fmt --all -- --check
step "clippy"        cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests"         cargo test --workspace --locked
step "docs"          env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# Only the bench targets (`--bench '*'`): plain `cargo bench` also builds every library's and
# binary's test harness in the bench profile, which doubled this step's time and tested nothing.
step "bench compile" cargo bench --workspace --bench '*' --locked -- --test
step "build release" cargo build --release --locked -p corral-server
step "package"       bash ci/package.sh
step "monitoring"    bash ci/monitoring.sh
step "kazoo suite"   bash ci/kazoo.sh
step "kazoo, ensemble" bash ci/kazoo.sh --ensemble
step "kazoo, mixed"  bash ci/kazoo.sh --mixed
step "real clients"  bash ci/clients.sh
step "compare smoke" bash ci/compare-smoke.sh
step "simulator"     bash ci/sim.sh
step "chaos"         bash ci/chaos.sh
step "fuzz (short)"  bash ci/fuzz.sh

summary
