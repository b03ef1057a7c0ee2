#!/usr/bin/env bash
# bench/proxy/multicore.sh: rvs's two threading models for the socket plane, side
# by side under the same load: --plane-runtime per-core (one single-threaded
# runtime per worker, SO_REUSEPORT listeners each) against shared (one
# work-stealing runtime), both with --plane-threads 2 and nothing pinned (the
# machine's two CPUs carry the proxy, the load generator and the backends alike).
# Rounds alternate the two; medians of connections/s and p99 are printed with
# the ratio per-core/shared.
#
# Usage: bench/proxy/multicore.sh [ROUNDS] [SECONDS]   (defaults 3 and 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS="${1:-3}"
DURATION="${2:-5}"
BASE="${BENCH_PORT_BASE:-23000}"
cargo build --release -q -p rvs-loadgen -p rvsd
T="${CARGO_TARGET_DIR:-target}/release"
TMP="$(mktemp -d /tmp/rvs-multicore.XXXXXX)"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

B1=$((BASE + 1)) B2=$((BASE + 2)) B3=$((BASE + 3)) B4=$((BASE + 4)) VIP_PORT=$((BASE + 10))
"$T/rvs-loadgen" backend --mode reqresp --threads 1 \
	--listen "127.0.0.1:$B1,127.0.0.1:$B2,127.0.0.1:$B3,127.0.0.1:$B4" --id b1,b2,b3,b4 \
	>"$TMP/backend.log" 2>&1 &
PIDS+=($!)
sleep 0.5

run_one() { # runtime: starts rvsd, runs the load, prints "cps p99_us"
	local rt="$1" sock="$TMP/rvsd-$1.sock" pid out
	RVS_SOCKET="$sock" "$T/rvsd" --no-state --socket "$sock" --data-plane socket \
		--plane-threads 2 --plane-runtime "$rt" --log warn >"$TMP/rvsd-$rt.log" 2>&1 &
	pid=$!
	until [ -S "$sock" ]; do sleep 0.05; done
	RVS_SOCKET="$sock" "$T/rvsadm" -A -t "127.0.0.1:$VIP_PORT" -s rr
	for b in $B1 $B2 $B3 $B4; do
		RVS_SOCKET="$sock" "$T/rvsadm" -a -t "127.0.0.1:$VIP_PORT" -r "127.0.0.1:$b" -m
	done
	sleep 0.3
	out="$("$T/rvs-loadgen" cps --threads 2 --target "127.0.0.1:$VIP_PORT" --concurrency 128 \
		--duration "$DURATION" 2>/dev/null)"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["cps"], j["p99_us"])' "$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$TMP/per-core" && : >"$TMP/shared"
for r in $(seq "$ROUNDS"); do
	for rt in per-core shared; do
		res="$(run_one "$rt")"
		echo "round $r $rt: cps ${res% *}, p99 ${res#* } us" >&2
		echo "$res" >>"$TMP/$rt"
	done
done
pc_cps="$(cut -d' ' -f1 "$TMP/per-core" | median)"
sh_cps="$(cut -d' ' -f1 "$TMP/shared" | median)"
pc_p99="$(cut -d' ' -f2 "$TMP/per-core" | median)"
sh_p99="$(cut -d' ' -f2 "$TMP/shared" | median)"
printf '%-10s %12s %12s\n' runtime "conn/s" "p99 us"
printf '%-10s %12.0f %12.0f\n' per-core "$pc_cps" "$pc_p99" shared "$sh_cps" "$sh_p99"
python3 -c 'import sys; a,b,c,d=map(float,sys.argv[1:]); print(f"per-core/shared: conn/s {a/b:.2f}, p99 {c/d:.2f}")' \
	"$pc_cps" "$sh_cps" "$pc_p99" "$sh_p99"
