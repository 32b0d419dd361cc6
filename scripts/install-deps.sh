#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: returns at once when everything is already present.
set -euo pipefail

packages=(
    # build: libxdp-sys runs bindgen (libclang) and builds libxdp/libbpf (clang, llc, m4, make)
    clang llvm m4 make pkg-config libelf-dev zlib1g-dev libclang-dev
    # topology and inspection
    iproute2 ethtool iptables tcpdump
    # peers and tools the tests drive
    python3 iperf3 socat curl netcat-openbsd wrk
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}); run as root" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
