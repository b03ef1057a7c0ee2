#!/bin/sh
# Rebuilds prebuilt/rvs_decap.o from rvs_decap.c (the object rvs-realserver
# embeds with include_bytes). Run from anywhere; needs clang-14 and the
# libbpf-dev headers. Debug info names paths relative to this directory, so the
# object does not depend on where the checkout lives.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
mkdir -p prebuilt
clang-14 -O2 -g -target bpf -mcpu=v3 -I/usr/include/x86_64-linux-gnu \
	-fdebug-prefix-map="$here"=. \
	-c rvs_decap.c -o prebuilt/rvs_decap.o
echo "built $here/prebuilt/rvs_decap.o"
