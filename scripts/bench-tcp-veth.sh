#!/usr/bin/env bash
# TCP over a veth pair, side by side and alternating: xdpstack
# `serve --tcp-echo` vs the kernel's epoll echo (`baseline kernel-tcp-echo
# --busy-poll`), each driven by the same clients in the peer namespace:
# kernel sockets (interop) and xdpstack itself on the peer interface
# (`--client xdpstack`: xdpstack on both ends, the stack's own limit). Four
# cells each: `bench tcp-rr` with 1 and 64 connections, `tcp-crr` with 16
# slots, `tcp-stream` with one connection. Server pinned to CPU 0, client
# to CPU 1. The peer's TSO/GSO is off (`veth.sh --no-tso`): in generic XDP
# mode its super-segments would not fit a frame; both servers see the same
# segment sizes. For the xdpstack client's rows (and a second kernel-client
# stream row, 1*) the host side's checksum
# offload, TSO and GSO are off as well (its AF_XDP socket needs full
# checksums and frames within the MTU), and restored after them.
#
#   scripts/bench-tcp-veth.sh [--rounds N] [--duration S] [--xdp-mode auto|native|generic]
#                             [--poll busy|wakeup] [--payload B] [--out DIR]
#
# --xdp-mode (default generic, faster than native on veth: see
# bench-veth.sh) applies to the xdpstack server and client.
# --poll applies to the xdpstack server and the xdpstack client (see
# bench-veth.sh on busy-polling a loaded machine).
#
# Needs root. JSON lines go to DIR/results.jsonl (default
# results/bench-tcp-veth-<UTC time>/), the table of medians to DIR/table.txt,
# with the load average at the start and the end (busy-polling ends lose
# their cores to other work on a loaded machine).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/bench-lib.sh"
rounds=3
duration=5
mode=generic
poll=busy
payload=64
out=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--xdp-mode) mode=$2; shift 2 ;;
	--poll) poll=$2; shift 2 ;;
	--payload) payload=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) sed -n '2,25p' "$0" >&2; exit 2 ;;
	esac
done

(cd "$root" && cargo build --release --quiet --bin xdpstack)
bin="$root/target/release/xdpstack"
out=${out:-"$root/results/bench-tcp-veth-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"

name="bt$$"
name=${name:0:12}
server_pid=""
cleanup() {
	stop_server
	"$root/scripts/veth.sh" destroy "$name"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$root/scripts/veth.sh" create "$name" --no-tso)"
port=7001

start_server() {
	local log="$out/server-$1.log"
	case $1 in
	xdpstack)
		start_ready "$log" "serving on" "$bin" serve --iface "$HOST_IF" --tcp-echo "$port" \
			--cores 0 --xdp-mode "$mode" --poll "$poll" ;;
	kernel)
		start_ready "$log" "kernel TCP echo on" "$bin" baseline kernel-tcp-echo \
			--bind "$HOST_IP:$port" --core 0 --busy-poll ;;
	esac
}

run_client() {
	local server=$1 client=$2 kind=$3 conns=$4 size=$5 xdp=()
	if [[ $client == xdpstack ]]; then
		xdp=(--client xdpstack --iface "$PEER_IF" --xdp-mode "$mode" --poll "$poll")
	fi
	ip netns exec "$NS" "$bin" bench "$kind" --target "$HOST_IP:$port" \
		--duration "$duration" --payload "$size" --connections "$conns" \
		--core 1 --server-label "$server" "${xdp[@]}" --json | tee -a "$results"
}

# The host side's offloads as they were, restored after the xdpstack
# client's rows.
offload() {
	ethtool -k "$HOST_IF" | awk -v f="$1" '$1 == f":" { print $2 }'
}
host_tx=$(offload tx-checksumming)
host_tso=$(offload tcp-segmentation-offload)
host_gso=$(offload generic-segmentation-offload)
host_offloads() {
	if [[ $1 == off ]]; then
		ethtool -K "$HOST_IF" tx off tso off gso off >/dev/null
	else
		ethtool -K "$HOST_IF" tx "$host_tx" tso "$host_tso" gso "$host_gso" >/dev/null 2>&1 || true
	fi
}

cells() {
	local round=$1 server=$2 client=$3
	run_client "$server" "$client" tcp-rr 1 "$payload" || echo "round $round $server/$client tcp-rr/1 failed" >&2
	run_client "$server" "$client" tcp-rr 64 "$payload" || echo "round $round $server/$client tcp-rr/64 failed" >&2
	run_client "$server" "$client" tcp-crr 16 "$payload" || echo "round $round $server/$client tcp-crr/16 failed" >&2
	run_client "$server" "$client" tcp-stream 1 65536 || echo "round $round $server/$client tcp-stream failed" >&2
}

echo "bench-tcp-veth: $rounds round(s) of ${duration}s, payload $payload, xdp mode $mode, poll $poll, results in $out"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
	for server in xdpstack kernel; do
		start_server "$server"
		cells "$round" "$server" kernel
		host_offloads off
		cells "$round" "$server" xdpstack
		# The same stream with both servers sending MTU-sized segments: the
		# kernel's GSO otherwise crosses veth in 64 KiB super-segments.
		run_client "$server/no-gso" kernel tcp-stream 1 65536 ||
			echo "round $round $server/no-gso tcp-stream failed" >&2
		host_offloads restore
		stop_server
		sleep 1
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$load_start" "$load_end" "$(nproc)" <<'PY' | tee "$out/table.txt"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("load average (1/5/15 min) at start %s, at end %s, on %s cores" % tuple(sys.argv[2:5]))
def med(client, server, kind, conns, key):
    v = [r[key] for r in rows if r["client"] == client and r["server"] == server
         and r["kind"] == kind and r["inflight"] == conns]
    return st.median(v) if v else float("nan")
def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")
cells = (("tcp-rr", 1), ("tcp-rr", 64), ("tcp-crr", 16), ("tcp-stream", 1))
pairs = (("kernel", "xdpstack"), ("kernel", "kernel"), ("xdpstack", "xdpstack"), ("xdpstack", "kernel"))
print("medians per cell; columns are client->server (k = kernel sockets, x = xdpstack)")
print("rate = transactions/s (rr), connections/s (crr), Gbit/s (stream); x/k = xdpstack server over kernel server,")
print("same client; xx/kk = xdpstack on both ends over the kernel on both ends")
hdr = "%-10s %5s | %11s %11s %6s | %11s %11s %6s | %6s" % (
    "bench", "conns", "k->x", "k->k", "x/k", "x->x", "x->k", "x/k", "xx/kk")
print(hdr)
print("-" * len(hdr))
for kind, conns in cells:
    key = "gbit_s" if kind == "tcp-stream" else "per_s"
    kx, kk, xx, xk = (med(c, s, kind, conns, key) for c, s in pairs)
    print("%-10s %5d | %11.2f %11.2f %6.2f | %11.2f %11.2f %6.2f | %6.2f" % (
        kind, conns, kx, kk, ratio(kx, kk), xx, xk, ratio(xx, xk), ratio(xx, kk)))
kx, kk = med("kernel", "xdpstack/no-gso", "tcp-stream", 1, "gbit_s"), med("kernel", "kernel/no-gso", "tcp-stream", 1, "gbit_s")
print("%-10s %5s | %11.2f %11.2f %6.2f |   (host TSO/GSO off: both servers send MTU-sized segments)" % (
    "tcp-stream", "1*", kx, kk, ratio(kx, kk)))
print()
print("latency (us), same cells: p50, p99 and p99.9 per client->server")
hdr = "%-8s %5s | %8s %7s %7s %7s | %8s %8s %8s %8s | %9s %9s %9s %9s | %6s %6s" % (
    "bench", "conns", "p50 k->x", "k->k", "x->x", "x->k", "p99 k->x", "k->k", "x->x", "x->k",
    "p999 k->x", "k->k", "x->x", "x->k", "p99x/k", "xx/kk")
print(hdr)
print("-" * len(hdr))
for kind, conns in cells:
    if kind == "tcp-stream":
        continue
    p50, p99, p999 = ([med(c, s, kind, conns, q) for c, s in pairs]
                      for q in ("p50_us", "p99_us", "p999_us"))
    print("%-8s %5d | %8.1f %7.1f %7.1f %7.1f | %8.1f %8.1f %8.1f %8.1f | %9.1f %9.1f %9.1f %9.1f | %6.3f %6.3f" % (
        kind, conns, *p50, *p99, *p999, ratio(p99[0], p99[1]), ratio(p99[2], p99[1])))
PY
