#!/usr/bin/env bash
# Installs what is missing, builds retrokv (with the CUDA kernels when nvcc is present) and runs
# every test; then runs the CPU tests once more under AddressSanitizer + UBSan.
# GPU tests (label gpu) report "skipped" without a device.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
retrokv_install_deps
cd "$RETROKV_ROOT"
if [ -x scripts/fetch_model.sh ]; then ./scripts/fetch_model.sh || echo "(model fetch failed: model tests will skip)"; fi

echo "== build (build/)"
retrokv_build build
echo "== tests"
ctest --test-dir build --output-on-failure -j "$JOBS" --timeout 1500

echo "== AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/, CUDA off)"
retrokv_build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRETROKV_ENABLE_CUDA=OFF \
  -DRETROKV_SANITIZE=address,undefined -DRETROKV_BUILD_BENCHMARKS=OFF
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  RETROKV_SANITIZER_BUILD=1 ctest --test-dir build-asan --output-on-failure -j "$JOBS" -L cpu \
  --timeout 1500
echo "== all tests passed"
