#!/usr/bin/env bash
# Installs what is missing, builds retrokv and runs the main demo: exact split-KV decode attention
# over a synthetic 128K-token context, with its error against a double-precision reference and
# the achieved memory bandwidth.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
retrokv_install_deps
cd "$RETROKV_ROOT"
retrokv_configure build
cmake --build build -j "$JOBS" --target demo_split_kv
./build/bin/demo_split_kv "$@"
