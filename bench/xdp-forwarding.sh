#!/usr/bin/env bash
# bench/xdp-forwarding.sh: the packet plane against its ceiling and against
# nftables DNAT, in one run, on one generator and one topology.
#
# Topology: namespace gen (g0, 10.0.0.1) <-veth-> namespace dir (d0, 10.0.0.2,
# the director). VIP 10.2.0.1:80; clients 10.1.0.0/16; real servers
# 10.3.0.1-3, routed back out of d0 to g0's MAC (static neighbours), so
# everything the director forwards arrives at g0.
#
# Generator: xdp_gen (crates/rvs-xdp/bpf/rvs_bench.c) run with
# BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES on g0: each 64-byte TCP frame
# it XDP_TXes crosses the veth to d0. Sink: xdp_count_drop on g0 counts what
# the director sends back. Rate = sink count / wall time of the window.
#
# Cases (each --seconds long after a 0.3 s warm-up):
#   ceiling      xdp_count_drop on d0 (frames the director received)
#   rvs DR/TUN/NAT/FullNAT   rvs_xdp on d0, one established flow installed
#                through the loader (the entries rvsd installs)
#   nft DNAT     xdp_pass_all on d0, kernel forwarding, conntrack, nft
#                `dnat to numgen inc mod 3 map {...}` (kube-proxy's nftables mode)
#   new conns    SYNs with a new source port/address each: rvsd -s wlc (upcall
#                path), rvsd -s mh (decided in XDP), nft DNAT (conntrack)
#   upcall transports   every frame handed to userspace and sent back out by a
#                thread on CPU 0, no decision: ring buffer + one AF_PACKET sendto
#                per frame (rvsd's upcall today), ring buffer + sendmmsg per batch,
#                and an AF_XDP socket (copy mode; veth has no zero-copy)
#   cost         BPF_PROG_TEST_RUN repeat over one DR established-flow frame,
#                against xdp_redirect_peer (DR only: a non-live repeat reruns
#                the program on its own output, which only DR leaves matching)
#
# --split: the generator hands its frames to the other CPU through a cpumap
#   (xdp_cpu_to_peer sends them out of g0 there), so the director's and the
#   sink's work runs on that CPU and the generator's on its own: the rates then
#   measure the director, not the whole pipeline on one CPU. Not for the
#   wlc_new/mh_new cases (rvsd runs on that CPU).
#
# Usage: sudo bench/xdp-forwarding.sh [--seconds S] [--repeat N] [--upcall-rate R]
#        [--split] [--only CASE,...]   (cases: ceiling dr tun nat fnat nft ceiling_new nft_new
#                             wlc_new mh_new cost; default all)
# Needs root, nft, iproute2, taskset. The generator (and so the softirq work
# it triggers) is pinned to CPU 1, rvsd to CPU 0. About 1.5 minutes plus the build.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

SECS=3
REPEAT=1000000
UPCALL_RATE=0
ONLY=""
SPLIT=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--seconds) SECS="$2"; shift 2 ;;
	--repeat) REPEAT="$2"; shift 2 ;;
	--upcall-rate) UPCALL_RATE="$2"; shift 2 ;;
	--only) ONLY="$2"; shift 2 ;;
	--split) SPLIT=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
	esac
done
if [[ "$(id -u)" != 0 ]]; then
	echo "bench/xdp-forwarding.sh needs root (network namespaces, XDP, nftables)" >&2
	exit 1
fi
for tool in ip nft taskset cargo; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

cd "$(dirname "$0")/.."
echo "building (release)..." >&2
cargo build --release -q -p rvs-xdp --bin rvs-xdp-bench -p rvsd --bin rvsd --bin rvsadm
TARGET="${CARGO_TARGET_DIR:-target}/release"
BENCH="$TARGET/rvs-xdp-bench"
RVSD="$TARGET/rvsd"
RVSADM="$TARGET/rvsadm"
GEN_CPU=1
RVSD_CPU=0
[[ "$(nproc)" -ge 2 ]] || { GEN_CPU=0; RVSD_CPU=0; }

G="rvsb-gen-$$"
D="rvsb-dir-$$"
WORK="$(mktemp -d)"
RVSD_PID=""
cleanup() {
	if [[ -n "$RVSD_PID" ]]; then kill "$RVSD_PID" 2>/dev/null || true; wait "$RVSD_PID" 2>/dev/null || true; fi
	ip netns del "$G" 2>/dev/null || true
	ip netns del "$D" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add "$G"
ip netns add "$D"
ip link add g0 netns "$G" numtxqueues 2 numrxqueues 2 type veth \
	peer name d0 netns "$D" numtxqueues 2 numrxqueues 2
for ns in "$G" "$D"; do ip -n "$ns" link set lo up; done
ip -n "$G" addr add 10.0.0.1/24 dev g0
ip -n "$D" addr add 10.0.0.2/24 dev d0
ip -n "$G" link set g0 up
ip -n "$D" link set d0 up
GMAC=$(ip -n "$G" -o link show g0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
DMAC=$(ip -n "$D" -o link show d0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
GIDX=$(ip -n "$G" -o link show g0 | cut -d: -f1)
DIDX=$(ip -n "$D" -o link show d0 | cut -d: -f1)
ip -n "$D" route add 10.1.0.0/16 via 10.0.0.1 dev d0
ip -n "$D" route add 10.3.0.0/24 dev d0
ip -n "$D" neigh replace 10.0.0.1 lladdr "$GMAC" dev d0 nud permanent
for i in 1 2 3; do ip -n "$D" neigh replace "10.3.0.$i" lladdr "$GMAC" dev d0 nud permanent; done
ip netns exec "$D" sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
	net.ipv4.conf.d0.rp_filter=0 net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.d0.send_redirects=0

COMMON=(--gen-ns "$G" --dir-ns "$D" --gen-if g0 --dir-if d0 --gen-ifindex "$GIDX"
	--dir-ifindex "$DIDX" --gen-mac "$GMAC" --dir-mac "$DMAC" --seconds "$SECS")
declare -A RATE SENT LINE

# run NAME ARGS...: one live case; keeps the received rate (Mpps) and the line.
want() { [[ -z "$ONLY" || ",$ONLY," == *",$1,"* ]]; }
run() {
	local name="$1"; shift
	want "$name" || return 0
	local out
	local via=()
	if [[ "$SPLIT" == 1 && "$name" != wlc_new && "$name" != mh_new && "$name" != upcall_* ]]; then
		via=(--via-cpu "$RVSD_CPU")
	fi
	out=$(taskset -c "$GEN_CPU" "$BENCH" live "${COMMON[@]}" "${via[@]}" "$@")
	LINE[$name]="$out"
	RATE[$name]=$(sed -n 's/.* received_mpps=\([0-9.]*\).*/\1/p' <<<"$out")
	SENT[$name]=$(sed -n 's/.* sent_mpps=\([0-9.]*\).*/\1/p' <<<"$out")
	if [[ "$name" == ceiling* ]]; then
		RATE[$name]=$(sed -n 's/.* director_mpps=\([0-9.]*\).*/\1/p' <<<"$out")
	fi
	echo "  $name: $out" >&2
}

nft_on() {
	ip netns exec "$D" nft -f - <<'EOF'
table ip rvsbench {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.2.0.1 tcp dport 80 dnat to numgen inc mod 3 map { 0 : 10.3.0.1, 1 : 10.3.0.2, 2 : 10.3.0.3 }
	}
}
EOF
}
nft_off() {
	ip netns exec "$D" nft delete table ip rvsbench
}

# rvsd_on SCHED: rvsd on d0, one DR service with three reals.
rvsd_on() {
	local sock="$WORK/rvsd.sock"
	rm -f "$sock"
	ip netns exec "$D" taskset -c "$RVSD_CPU" "$RVSD" --socket "$sock" --no-state \
		--data-plane xdp --xdp-iface d0 --tun-source 10.0.0.2 --upcall-rate "$UPCALL_RATE" \
		--log warn 2>"$WORK/rvsd.log" &
	RVSD_PID=$!
	for _ in $(seq 100); do [[ -S "$sock" ]] && break; sleep 0.1; done
	[[ -S "$sock" ]] || { echo "rvsd did not start:"; cat "$WORK/rvsd.log"; exit 1; } >&2
	RVS_SOCKET="$sock" "$RVSADM" -A -t 10.2.0.1:80 -s "$1"
	for i in 1 2 3; do RVS_SOCKET="$sock" "$RVSADM" -a -t 10.2.0.1:80 -r "10.3.0.$i:80" -g -w 1; done
	# The plane syncs its tables every 250 ms and resolves the real servers' MACs.
	sleep 1.5
}
rvsd_off() {
	kill "$RVSD_PID"; wait "$RVSD_PID" 2>/dev/null || true
	RVSD_PID=""
}

START=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "forwarding, one established flow:" >&2
run ceiling --director drop --flows one
run dr --director dr --flows one
run tun --director tun --flows one
run nat --director nat --flows one
run fnat --director fnat --flows one
nft_on
run nft --director pass --flows one
echo "new connections (a new source port per SYN):" >&2
run ceiling_new --director drop --flows new
run nft_new --director pass --flows new
nft_off
if want wlc_new; then
	rvsd_on wlc
	run wlc_new --director none --flows new
	rvsd_off
fi
if want mh_new; then
	rvsd_on mh
	run mh_new --director none --flows new
	rvsd_off
fi
echo "upcall transports (every frame to userspace on CPU $RVSD_CPU and back out):" >&2
for t in ring mmsg xsk; do
	run "upcall_$t" --director "upcall-$t" --flows new --upcall-cpu "$RVSD_CPU" --xsk-queue "$((GEN_CPU % 2))"
done
echo "per-packet cost (BPF_PROG_TEST_RUN, repeat $REPEAT):" >&2
COST=$(ip netns exec "$D" true && taskset -c "$GEN_CPU" "$BENCH" cost --dir-ns "$D" \
	--dir-ifindex "$DIDX" --gen-mac "$GMAC" --dir-mac "$DMAC" --repeat "$REPEAT")
echo "$COST" | sed 's/^/  /' >&2
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
# ns per frame of the whole pipeline (generator, director, sink: one CPU).
nsper() { awk -v a="$1" 'BEGIN { if (a > 0) printf "%.0f", 1000 / a; else printf "-" }'; }
extra() { awk -v a="$1" -v c="$2" 'BEGIN { if (a > 0 && c > 0) printf "%.0f", 1000 / a - 1000 / c; else printf "-" }'; }
kpps() { awk -v a="$1" 'BEGIN { printf "%.0f", a * 1000 }'; }

echo
echo "# bench/xdp-forwarding.sh, $START, load $LOAD0 -> $LOAD1, ${SECS}s per case$([[ $SPLIT == 1 ]] && echo ", --split: generator on CPU $GEN_CPU, director and sink on CPU $RVSD_CPU")"
echo "# $(nproc) CPUs, $(uname -r), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo
echo "| case | offered Mpps | forwarded Mpps | ns/frame | + ns over ceiling | / ceiling | / nft DNAT |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for c in ceiling dr tun nat fnat nft; do
	[[ -n "${RATE[$c]:-}" ]] || continue
	label="$c"
	case "$c" in
	ceiling) label="ceiling (XDP_DROP on d0)" ;;
	dr) label="rvs DR" ;; tun) label="rvs TUN (IPIP)" ;; nat) label="rvs NAT" ;;
	fnat) label="rvs FullNAT" ;; nft) label="nftables DNAT" ;;
	esac
	echo "| $label | ${SENT[$c]} | ${RATE[$c]} | $(nsper "${RATE[$c]}") | $(extra "${RATE[$c]}" "${RATE[ceiling]:-}") | $(ratio "${RATE[$c]}" "${RATE[ceiling]:-}") | $(ratio "${RATE[$c]}" "${RATE[nft]:-}") |"
done
echo
echo "| new connections | offered k/s | forwarded SYNs k/s | / nft DNAT |"
echo "|---|---:|---:|---:|"
for c in ceiling_new nft_new wlc_new mh_new; do
	[[ -n "${RATE[$c]:-}" ]] || continue
	case "$c" in
	ceiling_new) label="ceiling (XDP_DROP on d0)" ;; nft_new) label="nftables DNAT (conntrack)" ;;
	wlc_new) label="rvs wlc (upcall to rvsd)" ;; mh_new) label="rvs mh (in XDP)" ;;
	esac
	echo "| $label | $(kpps "${SENT[$c]}") | $(kpps "${RATE[$c]}") | $(ratio "${RATE[$c]}" "${RATE[nft_new]:-}") |"
done
echo
echo "| upcall transport (no decision, frames re-sent by one thread) | offered k/s | re-sent k/s | send syscalls per frame | / ring + sendto |"
echo "|---|---:|---:|---:|---:|"
for c in upcall_ring upcall_mmsg upcall_xsk; do
	[[ -n "${RATE[$c]:-}" ]] || continue
	case "$c" in
	upcall_ring) label="ring buffer + AF_PACKET sendto per frame (rvsd)" ;;
	upcall_mmsg) label="ring buffer + AF_PACKET sendmmsg per batch" ;;
	upcall_xsk) label="AF_XDP copy mode, TX ring + one kick per batch" ;;
	esac
	calls=$(awk -v l="${LINE[$c]}" 'BEGIN { n = split(l, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] } if (v["upcall_sent"] > 0) printf "%.3f", v["upcall_send_calls"] / v["upcall_sent"]; else printf "-" }')
	echo "| $label | $(kpps "${SENT[$c]}") | $(kpps "${RATE[$c]}") | $calls | $(ratio "${RATE[$c]}" "${RATE[upcall_ring]:-}") |"
done
echo
echo "| program (BPF_PROG_TEST_RUN, repeat $REPEAT, best of 3) | ns/packet | verdict | / redirect_peer |"
echo "|---|---:|---:|---:|"
BASE_NS=$(sed -n 's/^program=xdp_redirect_peer ns_per_packet=\([0-9.]*\).*/\1/p' <<<"$COST")
while read -r line; do
	name=$(sed -n 's/^program=\([a-z_]*\).*/\1/p' <<<"$line")
	method=$(sed -n 's/.* method=\([a-z]*\).*/\1/p' <<<"$line")
	ns=$(sed -n 's/.* ns_per_packet=\([0-9.]*\).*/\1/p' <<<"$line")
	verdict=$(sed -n 's/.* verdict=\([A-Z]*\).*/\1/p' <<<"$line")
	echo "| $name${method:+ $method} | $ns | $verdict | $(ratio "$ns" "$BASE_NS") |"
done <<<"$COST"
echo
echo "goals: DR/ceiling $(ratio "${RATE[dr]:-}" "${RATE[ceiling]:-}") (>= 0.7), DR/nft $(ratio "${RATE[dr]:-}" "${RATE[nft]:-}") (>= 5)," \
	"wlc cps/nft $(ratio "${RATE[wlc_new]:-}" "${RATE[nft_new]:-}") (>= 2), mh cps/nft $(ratio "${RATE[mh_new]:-}" "${RATE[nft_new]:-}") (>= 2)"
