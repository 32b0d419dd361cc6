#!/usr/bin/env bash
# UDP echo over a veth pair, side by side and alternating: xdpstack
# `serve --udp-echo` vs the kernel's recvmmsg echo (`baseline
# kernel-udp-echo`) vs the raw AF_XDP reflector (`baseline reflector`), each
# driven by the same clients: kernel UDP sockets and xdpstack itself, in
# the peer namespace. 64-byte payloads, 1 and 16 requests in flight.
# Server pinned to CPU 0, client to CPU 1.
#
#   scripts/bench-veth.sh [--rounds N] [--duration S] [--xdp-mode auto|native|generic]
#                         [--poll busy|wakeup] [--payload B] [--out DIR] [--udp-only]
#                         [--no-lossy] [--loss "PCT ..."]
#
# Then, unless --udp-only, the TCP comparison of scripts/bench-tcp-veth.sh
# (tcp-rr, tcp-crr, tcp-stream; its table goes to DIR/tcp/table.txt), and,
# unless --no-lossy, a lossy bulk download (DIR/lossy/table.txt): xdpstack
# `serve --tcp-source --cc cubic` vs the kernel's `baseline kernel-tcp-source
# --cc cubic`, alternating, to the same kernel receiver in the peer
# namespace (`bench tcp-stream --download`, one connection), with each PCT
# of --loss (default 1) dropped each way on the peer's interface by
# `xdpstack impair`. TSO/GSO and TX checksum offload are off on both sides:
# segments are MTU-sized for both senders, so the loss is per segment.
#
# --xdp-mode (default generic) applies to every XDP attach: on veth the
# generic (SKB) hook beat the native one in every cell measured side by side
# (UDP echo 16 in flight, xdpstack both ends: 863k vs 663k req/s; TCP too),
# as PLATFORM.md found; native is one flag away for comparison.
#
# --poll applies to the xdpstack server, the reflector and the xdpstack
# client. Busy-polling wins on idle cores. On oversubscribed ones (load
# about 3.5 on 2 cores) wakeups won at 16 in flight (xdpstack on both ends:
# 197k vs 134k req/s, p99 2.4 vs 4.1 ms: a busy poller loses its core for
# whole scheduler ticks) but still lost badly at 1 in flight (13k vs 236k).
#
# Needs root. JSON lines go to DIR/results.jsonl (default
# results/bench-veth-<UTC time>/), the table of medians to DIR/table.txt,
# with the load average at the start and the end: on a shared machine the
# busy-polling server and client lose their cores to other work, and the
# figures mean little when the load is above the number of cores.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/bench-lib.sh"
rounds=3
duration=5
mode=generic
poll=busy
payload=64
out=""
tcp=1
lossy=1
loss_rates="1"
while [[ $# -gt 0 ]]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--xdp-mode) mode=$2; shift 2 ;;
	--poll) poll=$2; shift 2 ;;
	--payload) payload=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--udp-only) tcp=0; shift ;;
	--no-lossy) lossy=0; shift ;;
	--loss) loss_rates=$2; shift 2 ;;
	*) sed -n '2,35p' "$0" >&2; exit 2 ;;
	esac
done

"$root/scripts/install-deps.sh"
(cd "$root" && cargo build --release --quiet)
bin="$root/target/release/xdpstack"
out=${out:-"$root/results/bench-veth-$(date -u +%Y%m%dT%H%M%SZ)"}
mkdir -p "$out"
results="$out/results.jsonl"
: >"$results"

name="bv$$"
name=${name:0:12}
lossy_name="bl$$"
lossy_name=${lossy_name:0:12}
server_pid=""
impair_pid=""
cleanup() {
	stop_server
	if [[ -n $impair_pid ]]; then
		kill -INT "$impair_pid" 2>/dev/null || true
		wait "$impair_pid" 2>/dev/null || true
	fi
	"$root/scripts/veth.sh" destroy "$name"
	"$root/scripts/veth.sh" destroy "$lossy_name"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$("$root/scripts/veth.sh" create "$name")"
# The kernel server's replies must carry full checksums for the xdpstack
# client (PLATFORM.md item 5), so TX checksum offload is off on this side
# too, for every server alike.
ethtool -K "$HOST_IF" tx off >/dev/null
port=7001

start_server() {
	local log="$out/server-$1.log"
	case $1 in
	xdpstack)
		start_ready "$log" "serving on" "$bin" serve --iface "$HOST_IF" --udp-echo "$port" \
			--cores 0 --xdp-mode "$mode" --poll "$poll" ;;
	kernel)
		start_ready "$log" "kernel UDP echo on" "$bin" baseline kernel-udp-echo \
			--bind "$HOST_IP:$port" --core 0 ;;
	reflector)
		start_ready "$log" "reflecting UDP port" "$bin" baseline reflector --iface "$HOST_IF" \
			--port "$port" --cores 0 --xdp-mode "$mode" --poll "$poll" ;;
	esac
}

run_client() {
	local server=$1 client=$2 inflight=$3
	ip netns exec "$NS" "$bin" bench udp-echo --target "$HOST_IP:$port" \
		--duration "$duration" --payload "$payload" --inflight "$inflight" \
		--client "$client" --iface "$PEER_IF" --core 1 --xdp-mode "$mode" --poll "$poll" \
		--server-label "$server" --json | tee -a "$results"
}

echo "bench-veth: $rounds round(s) of ${duration}s, payload $payload, xdp mode $mode, poll $poll, results in $out"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
	for server in xdpstack kernel reflector; do
		start_server "$server"
		for client in kernel xdpstack; do
			for inflight in 1 16; do
				run_client "$server" "$client" "$inflight" ||
					echo "bench-veth: round $round $server/$client/$inflight failed" >&2
			done
		done
		stop_server
	done
done

load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$load_start" "$load_end" "$(nproc)" <<'PY' | tee "$out/table.txt"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("load average (1/5/15 min) at start %s, at end %s, on %s cores" % tuple(sys.argv[2:5]))
def med(server, client, inflight, key):
    v = [r[key] for r in rows if r["server"] == server and r["client"] == client and r["inflight"] == inflight]
    return st.median(v) if v else float("nan")
def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")
print("medians of %d run(s) per cell; req/s and p99 latency (us)" % max(1, len(rows) // 12))
hdr = "%-9s %3s | %10s %10s %10s | %8s %8s | %8s %8s %8s | %6s" % (
    "client", "inf", "xdpstack", "kernel", "reflector", "x/kern", "x/refl",
    "p99 x", "p99 kern", "p99 refl", "p99x/k")
print(hdr)
print("-" * len(hdr))
for client in ("kernel", "xdpstack"):
    for inflight in (1, 16):
        x, k, r = (med(s, client, inflight, "per_s") for s in ("xdpstack", "kernel", "reflector"))
        px, pk, pr = (med(s, client, inflight, "p99_us") for s in ("xdpstack", "kernel", "reflector"))
        print("%-9s %3d | %10.0f %10.0f %10.0f | %8.2f %8.2f | %8.1f %8.1f %8.1f | %6.3f" % (
            client, inflight, x, k, r, ratio(x, k), ratio(x, r), px, pk, pr, ratio(px, pk)))
PY

if [[ $tcp == 1 ]]; then
	echo
	echo "== TCP"
	"$root/scripts/bench-tcp-veth.sh" --rounds "$rounds" --duration "$duration" \
		--xdp-mode "$mode" --out "$out/tcp"
fi

# ---- Lossy bulk download: xdpstack CUBIC vs the kernel's CUBIC as senders.
lossy_start() {
	local log="$out/lossy/server-$1.log"
	case $1 in
	xdpstack)
		start_ready "$log" "serving on" "$bin" serve --iface "$HOST_IF" --tcp-source "$port" \
			--cc cubic --cores 0 --xdp-mode "$mode" --poll "$poll" ;;
	kernel)
		start_ready "$log" "kernel TCP source on" "$bin" baseline kernel-tcp-source \
			--bind "$HOST_IP:$port" --cc cubic --core 0 --busy-poll ;;
	esac
}

if [[ $tcp == 1 && $lossy == 1 ]]; then
	echo
	echo "== lossy TCP download (loss ${loss_rates}% each way)"
	mkdir -p "$out/lossy"
	lossy_results="$out/lossy/results.jsonl"
	: >"$lossy_results"
	eval "$("$root/scripts/veth.sh" create "$lossy_name" --no-tso)"
	ethtool -K "$HOST_IF" tso off gso off tx off >/dev/null
	for rate in $loss_rates; do
		"$bin" impair --iface "$PEER_IF" --netns "$NS" --drop "$rate" --tcp-only \
			>"$out/lossy/impair-$rate.log" 2>&1 &
		impair_pid=$!
		for _ in $(seq 50); do
			grep -q "impairing" "$out/lossy/impair-$rate.log" && break
			sleep 0.1
		done
		grep -q "impairing" "$out/lossy/impair-$rate.log" || {
			cat "$out/lossy/impair-$rate.log" >&2
			exit 1
		}
		for round in $(seq "$rounds"); do
			for server in xdpstack kernel; do
				lossy_start "$server"
				# A second try after a second: a fresh server has been seen to
				# refuse the very first connection now and then.
				for attempt in 1 2; do
					if ip netns exec "$NS" "$bin" bench tcp-stream --download \
						--target "$HOST_IP:$port" --duration "$duration" --core 1 \
						--server-label "$server" --json >"$out/lossy/run.json"; then
						sed "s/^{/{\"loss_pct\":$rate,/" "$out/lossy/run.json" | tee -a "$lossy_results"
						break
					fi
					echo "bench-veth: lossy round $round $server at $rate% failed (attempt $attempt)" >&2
					sleep 1
				done
				stop_server
				sleep 1
			done
		done
		kill -INT "$impair_pid"
		wait "$impair_pid" || true
		impair_pid=""
		grep "^impair" "$out/lossy/impair-$rate.log"
	done
	python3 - "$lossy_results" <<'PY' | tee "$out/lossy/table.txt"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(server, loss):
    v = [r["gbit_s"] for r in rows if r["server"] == server and r["loss_pct"] == loss]
    return (st.median(v) if v else float("nan")), len(v)
print("lossy tcp-stream download, 1 connection, kernel receiver; medians; Gbit/s")
hdr = "%7s | %14s %14s | %6s | %4s" % ("loss %", "xdpstack cubic", "kernel cubic", "x/k", "runs")
print(hdr)
print("-" * len(hdr))
for loss in sorted({r["loss_pct"] for r in rows}):
    (x, nx), (k, nk) = med("xdpstack", loss), med("kernel", loss)
    ratio = x / k if k and k == k and x == x else float("nan")
    print("%7g | %14.3f %14.3f | %6.2f | %d/%d" % (loss, x, k, ratio, nx, nk))
PY
fi
