#!/usr/bin/env bash
set -uo pipefail
tar -xJf .carry/deps.tar.xz --skip-old-files -C / && ldconfig
S=/tmp/src; mkdir -p $S; tar --exclude=./.carry --exclude=./build -cf - . | tar -xf - -C $S; cd $S
cmake -S . -B build >/dev/null 2>&1 && cmake --build build -j16 --target test_cuda_attention test_cuda_gemv rankkv-generate > /tmp/b.log 2>&1 || { grep error /tmp/b.log | head; exit 1; }
echo "built at $SECONDS s"
timeout 60 ./build/bin/test_cuda_attention > /tmp/a.log 2>&1; echo "test_cuda_attention rc=$? $(tail -1 /tmp/a.log)"; grep "timing decode" /tmp/a.log
timeout 30 ./build/bin/test_cuda_gemv > /tmp/g.log 2>&1; echo "test_cuda_gemv rc=$? $(tail -1 /tmp/g.log)"
timeout 30 ./build/bin/rankkv-generate --target cuda --max-new-tokens 16 2>&1 | tail -2
echo "done at $SECONDS s"
