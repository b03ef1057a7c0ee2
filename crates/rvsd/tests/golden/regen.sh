#!/usr/bin/env bash
# Regenerates the golden files from the real ipvsadm 1.31 + Linux 6.1 IPVS
# (the ipvs-oracle guest), in ONE boot for all the chosen scenarios.
#   bash regen.sh                 # every NAME.cmds here
#   bash regen.sh list-basic errors-popt   # only these (NAME or NAME.cmds)
# For each scenario the guest clears the table and restores the default
# timeouts (ipvsadm -C; ipvsadm --set 900 120 300), then runs
# `sh driver.sh NAME.cmds`; its output becomes NAME.golden.
# Guest environment (set up by the preamble below, checked before anything is
# written): /etc/hosts = ./hosts, /etc/services = ./services,
# /etc/nsswitch.conf "hosts: files" + "services: files"; the host's Debian
# /usr/sbin/ipvsadm-save and ipvsadm-restore on PATH (they are #!/bin/bash:
# /bin/bash in the guest runs busybox sh); /sbin/modprobe = busybox, so the
# kernel can autoload ip_vs_pe_sip like on a real host; only lo has addresses.
# Afterwards check-order.py rejects any sorted service list whose order would
# depend on the kernel's per-boot hash order. Needs python3 on the host.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:-/work/shared/tools/ipvs-oracle/run.sh}
export ORACLE_TIMEOUT=${ORACLE_TIMEOUT:-1800}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ $# -gt 0 ]; then names=("$@"); else
	names=()
	for f in "$here"/*.cmds; do names+=("$(basename "$f" .cmds)"); done
fi
files=("$here/driver.sh" "$here/hosts" "$here/services" /usr/sbin/ipvsadm-save /usr/sbin/ipvsadm-restore)
for i in "${!names[@]}"; do
	n=${names[$i]%.cmds}; names[$i]=$n
	[ -f "$here/$n.cmds" ] || { echo "no such scenario: $n.cmds" >&2; exit 1; }
	files+=("$here/$n.cmds")
done

{
	cat <<'PRE'
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
B=/bin/busybox
for a in mktemp basename rm ln cp chmod; do [ -e /bin/$a ] || $B ln -s busybox /bin/$a; done
$B ln -sf /bin/busybox /sbin/modprobe
printf '#!/bin/sh\nexec /bin/busybox sh "$@"\n' > /bin/bash && $B chmod 755 /bin/bash
$B cp /share/hosts /etc/hosts && $B cp /share/services /etc/services
printf 'hosts: files\nservices: files\n' > /etc/nsswitch.conf
$B cp /share/ipvsadm-save /share/ipvsadm-restore /usr/sbin/ && $B chmod 755 /usr/sbin/ipvsadm-save /usr/sbin/ipvsadm-restore
echo "@@@ check version $(ipvsadm -v 2>&1)"
/usr/sbin/ip -o addr | while read -r _i _dev _fam _addr _rest; do echo "@@@ check addr $_dev $_fam $_addr"; done
ipvsadm -C; ipvsadm -A -t 127.0.0.1:80 -s rr; ipvsadm -a -t 127.0.0.1:80 -r 127.0.0.1:80 -m
echo "@@@ check names $(ipvsadm -L | grep -c 'localhost:http')"
echo "@@@ check save $(ipvsadm-save | grep -c 'localhost:http')"
ipvsadm -C
PRE
	for n in "${names[@]}"; do
		echo "ipvsadm -C >/dev/null 2>&1; ipvsadm --set 900 120 300 >/dev/null 2>&1"
		echo "echo '@@@ begin $n'"
		echo "sh /share/driver.sh /share/$n.cmds; echo \"@@@ end $n rc=\$?\""
	done
} > "$tmp/guest.sh"

start=$(date +%s)
bash "$ORACLE" "$tmp/guest.sh" "${files[@]}" > "$tmp/out" || { cat "$tmp/out" >&2; exit 1; }
echo "oracle run: $(( $(date +%s) - start )) s for ${#names[@]} scenarios" >&2

# the guest environment must be what the goldens assume
fail=0
check() { grep -qxF "$1" "$tmp/out" || { echo "guest check failed: expected '$1'" >&2; fail=1; }; }
check '@@@ check version ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)'
check '@@@ check names 2'
check '@@@ check save 2'
check '=== exit 0'
bad=$(grep '^@@@ check addr' "$tmp/out" | grep -vx -e '@@@ check addr lo inet 127.0.0.1/8' -e '@@@ check addr lo inet6 ::1/128' || true)
[ -z "$bad" ] || { echo "guest has unexpected addresses:" >&2; echo "$bad" >&2; fail=1; }
[ $fail = 0 ] || { echo "--- oracle output head:" >&2; head -40 "$tmp/out" >&2; exit 1; }

status=0
for n in "${names[@]}"; do
	if ! grep -qxF "@@@ end $n rc=0" "$tmp/out"; then
		echo "$n: no complete output from the guest" >&2; status=1; continue
	fi
	awk -v n="$n" '$0 == "@@@ begin " n { on = 1; next }
		on && $0 ~ "^@@@ end " { exit }
		on { print }' "$tmp/out" > "$here/$n.golden"
	echo "$n: $(grep -c '^\$ ' "$here/$n.golden") commands" >&2
	# a sorted service list must not depend on the kernel's per-boot hash order
	python3 "$here/check-order.py" "$here/$n.golden" >&2 || status=1
done
exit $status
