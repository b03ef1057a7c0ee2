#!/usr/bin/env bash
# Regenerates the golden files from the real Linux IPVS (the ipvs-oracle guest).
#   bash regen.sh            # every scenario
#   bash regen.sh rr wrr     # only these (NAME or NAME.sh)
# Every NAME.sh here except lib.sh and regen.sh is a scenario: rr wrr lc wlc
# sed nq fo ovf lblc lblcr sh dh mh persist states env (first batch); dr
# ops reuse nodest thresh ipv6 invalid (second batch).
# GRAMMAR_ONLY=1 checks the existing goldens without running the oracle.
# Runs one oracle at a time. Needs gcc with a static libc, and the host's
# iproute2 tc (fwmark scenarios), besides the oracle's own set-up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/tools/ipvs-oracle/run.sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gcc -static -O2 -Wall -o "$tmp/lvsprobe" "$here/lvsprobe.c"
# tc marks packets for the fwmark services (the guest has no iptables/nft).
# The guest already holds the other libraries tc needs (copied for ip).
cp "$(command -v tc || echo /usr/sbin/tc)" "$tmp/tc"
for l in libm.so.6 libxtables.so.12; do cp -L "/lib/x86_64-linux-gnu/$l" "$tmp/"; done

if [ $# -gt 0 ]; then names=("$@"); else
	names=()
	for f in "$here"/*.sh; do
		n=$(basename "$f" .sh)
		case $n in lib|regen) continue ;; esac
		names+=("$n")
	done
fi

status=0
for n in "${names[@]}"; do
	n=${n%.sh}
	echo "== $n" >&2
	if [ -z "${GRAMMAR_ONLY:-}" ]; then
		start=$(date +%s)
		bash "$ORACLE" "$here/$n.sh" "$here/lib.sh" "$tmp/lvsprobe" "$tmp/tc" "$tmp/libm.so.6" "$tmp/libxtables.so.12" \
			| sed 's/^=== exit/# === exit/' > "$here/$n.golden"
		echo "   $(( $(date +%s) - start )) s, $(wc -l < "$here/$n.golden") lines" >&2
	fi
	# every line must be an event of README.md's grammar, or a comment.
	# A = an endpoint: a.b.c.d:port, or [v6]:port as ipvsadm prints it
	A='([0-9.]+|\[[0-9a-f:]+\]):[0-9]+'
	bad=$(grep -Evn -e '^#' \
		-e '^(setup|cmd) .+$' \
		-e '^rule -[AaE] .+$' \
		-e '^dest (TCP|UDP|SCTP|FWM)/[^ ]+ [^ ]+ [A-Za-z]+ -?[0-9]+ [0-9]+ [0-9]+$' \
		-e '^sysctl [a-z_]+ [0-9]+$' \
		-e "^t=[0-9]+ conn (udp|held|closed) (tcp|udp) $A $A -> ($A|none)\$" \
		-e "^t=[0-9]+ counts $A [0-9]+ [0-9]+\$" \
		-e "^t=[0-9]+ stats $A [0-9]+\$" \
		-e '^t=[0-9]+ lnc-(begin|end)$' \
		-e '^t=[0-9]+ lnc [A-Z]+ .+$' \
		-e "^t=[0-9]+ close $A\$" \
		-e "^t=[0-9]+ abort $A( unseen)?\$" \
		-e "^t=[0-9]+ send $A -> ($A|none)\$" \
		-e '^t=[0-9]+ sleep [0-9]+$' \
		"$here/$n.golden" || true)
	if [ -n "$bad" ]; then echo "   lines outside the grammar:" >&2; echo "$bad" | head -20 >&2; status=1; fi
	grep -n -e MISMATCH -e '^# ipvsadm said' "$here/$n.golden" >&2 || true
	grep -q '^# === exit 0$' "$here/$n.golden" || { echo "   script did not exit 0" >&2; status=1; }
done
exit $status
