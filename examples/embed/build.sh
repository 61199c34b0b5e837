#!/bin/sh
# Builds the example against an installed rankkv, as any app would: through
# pkg-config (set PKG_CONFIG_PATH=<prefix>/lib/pkgconfig unless the prefix is
# one it searches). The profile header comes from the repository's profiles/
# unless PROFILES names another folder.
# usage: build.sh [OUTPUT]   (default: ./embed)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
profiles=${PROFILES:-$here/../../profiles}
${CC:-cc} -std=c11 -Wall -Wextra -Wpedantic -O2 $(pkg-config --cflags rankkv) -I"$profiles" \
    "$here/main.c" -o "${1:-embed}" $(pkg-config --libs rankkv)
