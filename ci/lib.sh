# Shared helpers for the ci/ scripts. Sourced, not run.

CI_START=$(date +%s)
CI_STEPS=()

# Runs a named step, timing it; a failure stops the script (set -e in the caller).
step() {
    local name=$1
    shift
    local t0
    t0=$(date +%s)
    echo "==> ${name}: $*"
    "$@"
    local dt=$(($(date +%s) - t0))
    CI_STEPS+=("${name}: ${dt}s")
    echo "<== ${name} passed in ${dt}s"
}

# Installs the system packages the test suite needs, if they are missing. Runs apt as root, or
# through sudo when there is one.
install_deps() {
    local need=()
    local pkg
    for pkg in ${CI_APT_PACKAGES:-}; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "==> installing ${need[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
    fi
}

summary() {
    echo "== all checks passed in $(($(date +%s) - CI_START))s"
    local s
    for s in "${CI_STEPS[@]}"; do
        echo "   $s"
    done
}
