#!/usr/bin/env bash
# bench/vrrp-failover.sh: VRRP takeover times on a LAN of network namespaces. Runs
# the takeover scenarios of crates/rvsd/tests/vrrp_interop.rs N times (every pairing
# of keepalived and rvsd as master and backup), collects their
# TAKEOVER lines and prints, per (master -> backup pairing, VRRP version, advert_int,
# mode), the median, min and max takeover in ms, the RFC figure for a backup of
# priority 100, and the ratio of an rvsd backup's median to a keepalived backup's
# under the same master when both were measured.
#
# A takeover is the time from the master's death (mode kill: link down + SIGKILL,
# just after one of its adverts) or its SIGTERM (mode stop) until a client's TCP
# connection to VIP:80 reaches the backup. RFC 3768 / RFC 5798: Skew_Time =
# (256 - priority) / 256 s (v2) or (256 - priority) * advert_int / 256 (v3); kill:
# Master_Down_Interval = 3 * advert_int + Skew_Time; stop (priority 0 received):
# Skew_Time.
#
# Usage: bench/vrrp-failover.sh [--runs N] [--include-ignored] [--threads N]
#                               [--scenarios LIST] [--keep]
set -euo pipefail

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
	cat <<'EOF'

Options:
  --runs N            runs of the test binary (default 5)
  --include-ignored   also run tests marked #[ignore] (none today)
  --threads N         tests run in parallel within a run (default 2)
  --scenarios LIST    comma-separated test name filters
                      (default failover_and_preempt,graceful_stop,fast_adverts_v3,nopreempt_keeps_backup)
  --keep              keep the raw test output (its path is printed)
Needs root (namespaces) and keepalived. Each run takes about 15-20 s per scenario
and pairing divided by --threads.
EOF
}

RUNS=5
IGNORED=()
THREADS=2
SCENARIOS="failover_and_preempt,graceful_stop,fast_adverts_v3,nopreempt_keeps_backup"
KEEP=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--runs) RUNS="$2"; shift 2 ;;
	--include-ignored) IGNORED=(--include-ignored); shift ;;
	--threads) THREADS="$2"; shift 2 ;;
	--scenarios) SCENARIOS="$2"; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
	esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "--threads wants a positive integer" >&2; exit 2; }
if [[ "$(id -u)" != 0 ]]; then
	echo "bench/vrrp-failover.sh needs root (network namespaces)" >&2
	exit 1
fi
command -v keepalived >/dev/null || { echo "keepalived is not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }

cd "$(dirname "$0")/.."
OUT="$(mktemp -d)"
cleanup() { [[ $KEEP = 1 ]] || rm -rf "$OUT"; }
trap cleanup EXIT

IFS=',' read -r -a FILTERS <<<"$SCENARIOS"
echo "building the test binary..." >&2
cargo test -p rvsd --test vrrp_interop --no-run >&2

FAILED=0
for ((run = 1; run <= RUNS; run++)); do
	echo "run $run/$RUNS..." >&2
	if ! cargo test -p rvsd --test vrrp_interop -- --nocapture \
		--test-threads "$THREADS" "${IGNORED[@]}" "${FILTERS[@]}" \
		>"$OUT/run$run.log" 2>&1; then
		FAILED=$((FAILED + 1))
		echo "run $run had failing tests (see $OUT/run$run.log; --keep keeps it)" >&2
		KEEP=1
	fi
	grep -oh 'TAKEOVER scenario=.*' "$OUT/run$run.log" >>"$OUT/takeover.txt" || true
done

if [[ ! -s "$OUT/takeover.txt" ]]; then
	echo "no TAKEOVER line was printed (were the tests skipped?)" >&2
	exit 1
fi

python3 - "$OUT/takeover.txt" <<'EOF'
import statistics
import sys

BACKUP_PRIORITY = 100

groups = {}
for line in open(sys.argv[1]):
    fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
    key = (
        fields["master"],
        fields["backup"],
        int(fields.get("version", "2")),
        int(fields["advert_int"]),
        fields["mode"],
    )
    groups.setdefault(key, []).append(float(fields["ms"]))


def rfc_ms(version, advert_ms, mode):
    skew = (256 - BACKUP_PRIORITY) / 256 * (1000 if version == 2 else advert_ms)
    return skew if mode == "stop" else 3 * advert_ms + skew


print(
    f"{'master -> backup':<26} {'v':>1} {'advert':>7} {'mode':<4} {'n':>3} "
    f"{'median':>8} {'min':>8} {'max':>8} {'RFC':>8} {'rvs/ka':>7}"
)
for key in sorted(groups):
    master, backup, version, advert, mode = key
    values = groups[key]
    median = statistics.median(values)
    ratio = ""
    if backup == "rvsd":
        peer = groups.get((master, "keepalived", version, advert, mode))
        if peer:
            ratio = f"{median / statistics.median(peer):.3f}"
    print(
        f"{master + ' -> ' + backup:<26} {version:>1} {str(advert) + 'ms':>7} {mode:<4} "
        f"{len(values):>3} {median:>8.1f} {min(values):>8.1f} {max(values):>8.1f} "
        f"{rfc_ms(version, advert, mode):>8.1f} {ratio:>7}"
    )
print("ms; RFC: Master_Down_Interval (kill) or Skew_Time (stop) of a priority-100 backup;")
print("rvs/ka: median with an rvsd backup / with a keepalived backup, same master")
EOF

if [[ $FAILED -gt 0 ]]; then
	echo "$FAILED of $RUNS runs had failing tests; raw output in $OUT" >&2
	exit 1
fi
if [[ $KEEP = 1 ]]; then
	echo "raw output kept in $OUT" >&2
fi
