#!/bin/bash
# Run every test: format check, unit tests, e2e tests (through the emulated
# KVM host where this machine has no hardware KVM), fuzz smoke runs.
#
#   scripts/test.sh              all tests
#   scripts/test.sh -L unit      only one label (unit, e2e, fuzz, oci, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "test: clang-format check"
files=$(git ls-files '*.c' '*.h')
if [ -n "$files" ]; then
	clang-format --dry-run --Werror $files
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
cd build
ctest --output-on-failure "$@"
