# driver.sh: replays one scenario of ipvsadm command lines.
#   sh driver.sh CASE.cmds
# Plain POSIX sh (busybox ash in the oracle guest, dash on a Debian host).
# Needs only ipvsadm, ipvsadm-save, ipvsadm-restore on PATH, plus the shell
# and cat, printf, echo, mktemp, rm.
#
# Every line of CASE.cmds that is neither empty nor starts with '#' is a
# command line. For each one it prints:
#   $ <line>
#   <the command's stdout, byte for byte>
#   [stderr]                  (only if stderr is non-empty)
#   <the command's stderr, byte for byte>
#   [rc=N]
# The command runs as `sh -c "$line"` with stdin from /dev/null, so the output
# is a pure function of (line, stdout bytes, stderr bytes, exit status). No
# state is reset between lines: a .cmds file is one scenario that starts from
# an empty table with the default timeouts (900 120 300).
# CASE_TMP names an empty scratch directory private to this run, for command
# lines that need a file (e.g. printf ... > "$CASE_TMP/r" && ipvsadm-restore < "$CASE_TMP/r").

if [ $# -ne 1 ] || [ ! -r "$1" ]; then
	echo "usage: sh driver.sh CASE.cmds" >&2
	exit 2
fi
d=$(mktemp -d "${TMPDIR:-/tmp}/ipvsgold.XXXXXX") || exit 2
trap 'rm -rf "$d"' EXIT
mkdir "$d/w" || exit 2
CASE_TMP=$d/w
export CASE_TMP

while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	'' | '#'*) continue ;;
	esac
	printf '$ %s\n' "$line"
	sh -c "$line" >"$d/out" 2>"$d/err" </dev/null
	rc=$?
	cat "$d/out"
	[ -s "$d/err" ] && { echo "[stderr]"; cat "$d/err"; }
	echo "[rc=$rc]"
done <"$1"
exit 0
