#!/usr/bin/env bash
# The static runtime cannot run an SVD: its binaries link the CUDA runtime
# and cuBLASLt, never LAPACK(E), cuSOLVER or cuBLAS, and contain no SVD or
# eigensolver symbol. rankkv-calibrate, which must, is the control that the
# check sees them. Usage: static_link_test.sh BIN_DIR DYNAMIC(ON|OFF)
set -u
bin=$1
dynamic=$2
if [ "$dynamic" = ON ] || [ "$dynamic" = 1 ]; then
    echo "SKIP: this is a RANKKV_DYNAMIC build, whose tools link rank measurement by design"
    exit 77
fi
if ! command -v readelf >/dev/null || ! command -v nm >/dev/null; then
    echo "SKIP: readelf/nm (binutils) are not installed"
    exit 77
fi
svd='gesdd|gesvd|syevd|syevj|syev_|LAPACKE_|cusolver|cublasDsyrk'
fail=0
for tool in rankkv-generate rankkv-bench rankkv-eval rankkv-ppl rankkv-compare; do
    exe="$bin/$tool"
    [ -x "$exe" ] || { echo "FAIL: $exe is missing"; fail=1; continue; }
    needed=$(readelf -d "$exe" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
    bad_libs=$(echo "$needed" | grep -E -i 'lapack|cusolver|^libcublas\.so' || true)
    gpu_libs=$(echo "$needed" | grep -E '^libcu|^libnv' | grep -v -E '^libcudart\.so|^libcublasLt\.so' || true)
    syms=$( (nm "$exe" 2>/dev/null; nm -D "$exe" 2>/dev/null) | grep -E -i "$svd" || true)
    if [ -n "$bad_libs$gpu_libs$syms" ]; then
        echo "FAIL: $tool links rank measurement: libs [$bad_libs $gpu_libs] symbols [$(echo $syms | head -c 300)]"
        fail=1
    else
        echo "ok: $tool needs $(echo $needed | tr '\n' ' ')and has no SVD symbol"
    fi
done
if ! (nm "$bin/rankkv-calibrate"; nm -D "$bin/rankkv-calibrate") 2>/dev/null | grep -q -E -i 'dgesdd'; then
    echo "FAIL: rankkv-calibrate shows no dgesdd: the check would not see an SVD"
    fail=1
fi
exit $fail
