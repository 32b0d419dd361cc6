#!/usr/bin/env bash
# TCP over a veth pair, side by side and alternating: xdpstack
# `serve --tcp-echo` vs the kernel's epoll echo (`baseline kernel-tcp-echo
# --busy-poll`), each driven by the same kernel-socket client in the peer
# namespace (`bench tcp-rr` with 1 and 16 connections, `tcp-crr` with 16
# slots, `tcp-stream` with one connection). Server pinned to CPU 0, client
# to CPU 1. The peer's TSO/GSO is off (`veth.sh --no-tso`): in generic XDP
# mode its super-segments would not fit a frame; both servers see the same
# segment sizes.
#
#   scripts/bench-tcp-veth.sh [--rounds N] [--duration S] [--xdp-mode auto|native|generic]
#                             [--payload B] [--out DIR]
#
# Needs root. JSON lines go to DIR/results.jsonl (default
# results/bench-tcp-veth-<UTC time>/), the table of medians to DIR/table.txt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rounds=3
duration=5
mode=auto
payload=64
out=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--xdp-mode) mode=$2; shift 2 ;;
	--payload) payload=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	*) sed -n '2,15p' "$0" >&2; exit 2 ;;
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
	if [[ -n $server_pid ]]; then
		kill -INT "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	"$root/scripts/veth.sh" destroy "$name"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$root/scripts/veth.sh" create "$name" --no-tso)"
port=7001

start_server() {
	local kind=$1 log="$out/server-$1.log" ready
	case $kind in
	xdpstack)
		"$bin" serve --iface "$HOST_IF" --tcp-echo "$port" --cores 0 --xdp-mode "$mode" >"$log" 2>&1 &
		ready="serving on" ;;
	kernel)
		"$bin" baseline kernel-tcp-echo --bind "$HOST_IP:$port" --core 0 --busy-poll >"$log" 2>&1 &
		ready="kernel TCP echo on" ;;
	esac
	server_pid=$!
	for _ in $(seq 100); do
		grep -q "$ready" "$log" && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench-tcp-veth: $kind server did not start:" >&2
	cat "$log" >&2
	exit 1
}

stop_server() {
	kill -INT "$server_pid"
	wait "$server_pid" || true
	server_pid=""
}

run_client() {
	local server=$1 kind=$2 conns=$3 size=$4
	ip netns exec "$NS" "$bin" bench "$kind" --target "$HOST_IP:$port" \
		--duration "$duration" --payload "$size" --connections "$conns" \
		--core 1 --server-label "$server" --json | tee -a "$results"
}

echo "bench-tcp-veth: $rounds round(s) of ${duration}s, payload $payload, xdp mode $mode, results in $out"
for round in $(seq "$rounds"); do
	for server in xdpstack kernel; do
		start_server "$server"
		run_client "$server" tcp-rr 1 "$payload" || echo "round $round $server tcp-rr/1 failed" >&2
		run_client "$server" tcp-rr 16 "$payload" || echo "round $round $server tcp-rr/16 failed" >&2
		run_client "$server" tcp-crr 16 "$payload" || echo "round $round $server tcp-crr/16 failed" >&2
		run_client "$server" tcp-stream 1 65536 || echo "round $round $server tcp-stream failed" >&2
		stop_server
		sleep 1
	done
done

python3 - "$results" <<'PY' | tee "$out/table.txt"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(server, kind, conns, key):
    v = [r[key] for r in rows if r["server"] == server and r["kind"] == kind and r["inflight"] == conns]
    return st.median(v) if v else float("nan")
def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")
print("medians per cell; kernel client; rate = transactions/s (rr), connections/s (crr), Gbit/s (stream)")
hdr = "%-10s %5s | %12s %12s %7s | %9s %9s %9s %9s %7s" % (
    "bench", "conns", "xdpstack", "kernel", "x/k", "p50 x", "p50 k", "p99 x", "p99 k", "p99x/k")
print(hdr)
print("-" * len(hdr))
for kind, conns in (("tcp-rr", 1), ("tcp-rr", 16), ("tcp-crr", 16), ("tcp-stream", 1)):
    key = "gbit_s" if kind == "tcp-stream" else "per_s"
    x, k = med("xdpstack", kind, conns, key), med("kernel", kind, conns, key)
    p50x, p50k = med("xdpstack", kind, conns, "p50_us"), med("kernel", kind, conns, "p50_us")
    p99x, p99k = med("xdpstack", kind, conns, "p99_us"), med("kernel", kind, conns, "p99_us")
    print("%-10s %5d | %12.2f %12.2f %7.2f | %9.1f %9.1f %9.1f %9.1f %7.3f" % (
        kind, conns, x, k, ratio(x, k), p50x, p50k, p99x, p99k, ratio(p99x, p99k)))
PY
