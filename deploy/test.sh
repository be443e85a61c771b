#!/usr/bin/env bash
# The whole test suite: installs missing packages, builds an optimized tree
# and an AddressSanitizer + UndefinedBehaviorSanitizer tree, and runs every
# ctest suite in both. Exits non-zero on the first failure.
#
#   SIM_SEEDS=n   seeds per simulator scenario (default: the CI budget)
#   SKV_TEST_VARIANTS="release asan"   which trees to build and test
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
variants=${SKV_TEST_VARIANTS:-"release asan"}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for v in $variants; do
  dir="build/$v"
  case "$v" in
    release) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSKV_SANITIZE=OFF) ;;
    asan)    args=(-DCMAKE_BUILD_TYPE=Debug -DSKV_SANITIZE=ON) ;;
    *) echo "test.sh: unknown variant '$v' (release, asan)" >&2; exit 2 ;;
  esac
  echo "== $v: configure and build ($dir)"
  cmake -S . -B "$dir" "${args[@]}" >/dev/null
  cmake --build "$dir" -j"$jobs"
  echo "== $v: ctest"
  (cd "$dir" && ctest --output-on-failure --timeout 900)
done
echo "== all test suites passed (${variants})"
