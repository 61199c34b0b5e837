#!/usr/bin/env bash
# Run 3: compute-sanitizer at 4fb7601 (the branch stream; its products given no workspace):
# memcheck on test_kv_compress cuda (SnapKV, PyramidKV, H2O ... prompts of many rows: the branch
# and the mass kernel), on test_parity nano cuda and on rankkv-generate (nano, the full cache and
# H2O); racecheck on test_cuda_attention --quick (the mass kernel's cp.async wait);
# synccheck on test_kv_compress cuda. Carry .carry/deps.tar.xz.
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
R=$OUT/res; mkdir -p $R
cmake -S . -B build > /dev/null 2>&1 && cmake --build build -j16 --target test_kv_compress test_parity test_cuda_attention rankkv-generate > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head; exit 1; }
echo "built at $SECONDS s"
cs() { local name=$1 t=$2 tool=$3; shift 3; timeout $t compute-sanitizer --tool $tool --error-exitcode 9 "$@" > /tmp/$name.log 2>&1; echo "$name rc=$? at $SECONDS s: $(grep -E 'SUMMARY' /tmp/$name.log | tail -1)"; }
{
cs memcheck_kv_compress 150 memcheck ./build/bin/test_kv_compress cuda
cs memcheck_parity_nano 90 memcheck ./build/bin/test_parity models/pythia-nano cuda
cs memcheck_generate_full 60 memcheck ./build/bin/rankkv-generate --target cuda --max-new-tokens 8
cs memcheck_generate_h2o 60 memcheck ./build/bin/rankkv-generate --target cuda --kv h2o --kv-budget 8 --max-new-tokens 8
cs racecheck_attention 150 racecheck ./build/bin/test_cuda_attention --quick
cs synccheck_kv_compress 120 synccheck ./build/bin/test_kv_compress cuda
} | tee $R/run3_sanitizer.txt
for f in /tmp/*check_*.log; do tail -5 $f | sed "s#^#$(basename $f): #"; done > $R/run3_tails.txt
echo "done at $SECONDS s"
