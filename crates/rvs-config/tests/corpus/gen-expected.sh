#!/bin/sh
# Regenerates expected.txt: the verdict of Debian's keepalived (2.2.7) `keepalived -t`
# on every corpus file ("clean" = exit 0, "dirty" = any other exit). Run from anywhere.
set -eu
cd "$(dirname "$0")"
command -v keepalived >/dev/null || { echo "keepalived is not installed" >&2; exit 1; }
: > expected.txt
for f in *.conf; do
    if keepalived -t -f "$PWD/$f" >/dev/null 2>&1; then v=clean; else v=dirty; fi
    echo "$f $v" >> expected.txt
done
