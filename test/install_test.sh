#!/bin/bash
# The installed package as an app sees it: `cmake --install` into a fresh
# prefix, examples/embed built against that prefix alone (pkg-config, then
# find_package), and each build run on pythia-nano. The app compiles in its
# own profile header, so this also checks that the installed headers are
# all a generated profile needs.
# usage: install_test.sh BUILD_DIR SOURCE_DIR MODEL_DIR C_COMPILER
set -u
build=$1 src=$2 model=$3
export CC=$4
. "$(dirname "$0")/expect.sh"

prefix=$tmp/prefix
# Output of an embed run in $tmp/out: exit 0, generated text and a finite
# perplexity (printf "%.4f" writes nan or inf otherwise).
check_run() {
    local name=$1 exe=$2
    if ! timeout 120 "$exe" "$model" >"$tmp/out" 2>"$tmp/err"; then
        bad "$name: embed failed"; cat "$tmp/err"; return
    fi
    ok
    if grep -qE '^generated [1-9][0-9]* tokens, [1-9][0-9]* bytes$' "$tmp/out"; then ok
    else bad "$name: no generated text"; cat "$tmp/out"; fi
    if grep -qE '^perplexity [0-9]+\.[0-9]+ over [1-9][0-9]* tokens$' "$tmp/out"; then ok
    else bad "$name: no finite perplexity"; cat "$tmp/out"; fi
    if grep -q '^KV policy: rankkv, average budget 64' "$tmp/out"; then ok
    else bad "$name: the plan was not printed with the rankkv policy"; cat "$tmp/out"; fi
}

if cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then ok
else bad "cmake --install"; cat "$tmp/install.log"; fi
for f in lib/librankkv.a include/rankkv.h include/rankkv/profile.h include/rankkv/rank_budget.h \
         include/rankkv/rk_error.h lib/pkgconfig/rankkv.pc lib/cmake/rankkv/rankkv-config.cmake \
         lib/cmake/rankkv/rankkv-config-version.cmake; do
    if [ -f "$prefix/$f" ]; then ok; else bad "not installed: $f"; fi
done

# pkg-config: the prefix is found through PKG_CONFIG_PATH only, and the
# source tree's headers are out of reach but for profiles/.
if PKG_CONFIG_PATH=$prefix/lib/pkgconfig sh "$src/examples/embed/build.sh" "$tmp/embed-pc" \
        >"$tmp/build.log" 2>&1; then
    ok
    check_run pkg-config "$tmp/embed-pc"
else
    bad "build.sh with pkg-config"; cat "$tmp/build.log"
fi

if cmake -S "$src/examples/embed" -B "$tmp/embed-cmake" -DCMAKE_PREFIX_PATH="$prefix" \
         -DCMAKE_C_COMPILER="$CC" >"$tmp/build.log" 2>&1 &&
   cmake --build "$tmp/embed-cmake" >>"$tmp/build.log" 2>&1; then
    ok
    check_run find_package "$tmp/embed-cmake/embed"
else
    bad "find_package(rankkv) build"; cat "$tmp/build.log"
fi

# The header from C++ (extern "C"): an app in C++ compiles and links it too.
if command -v c++ >/dev/null; then
    printf '%s\n' '#include "rankkv.h"' \
        'int main() { rankkv_options o; rankkv_options_default(&o); return o.max_new_tokens != 64; }' \
        >"$tmp/app.cpp"
    if c++ -std=c++17 -Wall -Wextra -pedantic $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags rankkv) \
           "$tmp/app.cpp" -o "$tmp/app-cpp" \
           $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --libs rankkv) >"$tmp/build.log" 2>&1 &&
       "$tmp/app-cpp"; then
        ok
    else
        bad "rankkv.h from C++"; cat "$tmp/build.log"
    fi
fi

finish install_test
