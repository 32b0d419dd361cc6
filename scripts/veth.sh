#!/usr/bin/env bash
# A veth topology for tests and benchmarks: one end stays in the current
# namespace (where xdpstack attaches), the other lives in a new namespace and
# is served by the Linux kernel (the peer).
#
#   scripts/veth.sh create NAME [--queues N] [--xps] [--no-tso] [--net A.B.C] [--mtu M]
#   scripts/veth.sh destroy NAME
#
# NAME: at most 12 characters, unique per user (put the caller's pid in it).
# Creates namespace NAME, interface NAMEh (here) and NAMEp (in the namespace),
# addresses A.B.C.1/24 (here) and A.B.C.2/24 (peer); A.B.C defaults to a /24
# inside 10.200.0.0/16 derived from NAME. The peer's TX checksum offload is
# turned off: otherwise its frames reach AF_XDP with partial checksums.
# --xps pins the peer's TX queue i to CPU i (mod CPUs): in native XDP mode
# the host's RX queue is the peer's TX queue, so a sender pinned to CPU i
# lands on queue i. --no-tso turns TSO/GSO off on the peer too: in generic
# XDP mode the peer's large segments would not fit a UMEM frame (native mode
# turns the peer's TSO off by itself). `create` prints the topology as shell
# assignments (HOST_IF=..., ...).
# `destroy` is idempotent: it removes whatever of the topology exists.
set -euo pipefail

usage() {
	sed -n '2,20p' "$0" >&2
	exit 2
}

[[ $# -ge 2 ]] || usage
cmd=$1
name=$2
shift 2
[[ ${#name} -le 12 && $name =~ ^[A-Za-z0-9_-]+$ ]] || {
	echo "veth.sh: NAME must be 1-12 characters [A-Za-z0-9_-]" >&2
	exit 2
}
host_if="${name}h"
peer_if="${name}p"

destroy() {
	ip netns del "$name" 2>/dev/null || true
	ip link del "$host_if" 2>/dev/null || true
}

case $cmd in
destroy)
	destroy
	exit 0
	;;
create) ;;
*) usage ;;
esac

queues=1
mtu=1500
xps=0
no_tso=0
# A stable /24 per name, so parallel topologies do not share a subnet.
sum=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
net="10.200.$((sum % 250 + 1))"
while [[ $# -gt 0 ]]; do
	case $1 in
	--queues) queues=$2; shift 2 ;;
	--net) net=$2; shift 2 ;;
	--mtu) mtu=$2; shift 2 ;;
	--xps) xps=1; shift ;;
	--no-tso) no_tso=1; shift ;;
	*) usage ;;
	esac
done

trap 'destroy' ERR
destroy
ip netns add "$name"
ip link add "$host_if" numrxqueues "$queues" numtxqueues "$queues" type veth \
	peer name "$peer_if" numrxqueues "$queues" numtxqueues "$queues" netns "$name"
for dev in "$host_if"; do
	sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1" || true
done
ip netns exec "$name" sysctl -qw "net.ipv6.conf.$peer_if.disable_ipv6=1" || true
ip link set "$host_if" mtu "$mtu"
ip netns exec "$name" ip link set "$peer_if" mtu "$mtu"
ip addr add "$net.1/24" dev "$host_if"
ip netns exec "$name" ip addr add "$net.2/24" dev "$peer_if"
ip netns exec "$name" ethtool -K "$peer_if" tx off >/dev/null
if [[ $no_tso == 1 ]]; then
	ip netns exec "$name" ethtool -K "$peer_if" tso off gso off >/dev/null
fi
ip link set "$host_if" up
ip netns exec "$name" ip link set lo up
ip netns exec "$name" ip link set "$peer_if" up
if [[ $xps == 1 ]]; then
	cpus=$(nproc)
	for ((q = 0; q < queues; q++)); do
		printf '%x' $((1 << (q % cpus))) |
			ip netns exec "$name" tee "/sys/class/net/$peer_if/queues/tx-$q/xps_cpus" >/dev/null
	done
fi
trap - ERR

echo "NS=$name"
echo "HOST_IF=$host_if"
echo "PEER_IF=$peer_if"
echo "HOST_IP=$net.1"
echo "PEER_IP=$net.2"
echo "HOST_MAC=$(cat "/sys/class/net/$host_if/address")"
echo "PEER_MAC=$(ip netns exec "$name" cat "/sys/class/net/$peer_if/address")"
echo "QUEUES=$queues"
