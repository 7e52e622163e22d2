#!/usr/bin/env bash
# Checks (or with --fix, applies) clang-format on every C++/CUDA source tracked by git.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' '*.c')
if [ "${1:-}" = "--fix" ]; then clang-format -i "${files[@]}"; exit 0; fi
clang-format --dry-run -Werror "${files[@]}"
echo "format ok: ${#files[@]} files"
