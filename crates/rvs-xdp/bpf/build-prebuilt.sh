#!/bin/sh
# Regenerates bpf/prebuilt/*.o, the objects build.rs falls back to when clang-14
# is not installed. Same flags as build.rs; run from anywhere, commit the result.
set -eu
cd "$(dirname "$0")"
mkdir -p prebuilt
for name in rvs_xdp rvs_bench; do
	clang-14 -O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu \
		-fdebug-prefix-map="$PWD"=. -c "$name.c" -o "prebuilt/$name.o"
	echo "built prebuilt/$name.o"
done
