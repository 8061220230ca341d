#!/usr/bin/env bash
# Sets up, builds and runs the test suite (unit + integration; the slow label is excluded unless
# CTFGEN_SLOW_TESTS=1). This is the README's test command and what CI runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${CTFGEN_BUILD_DIR:-$root/build}
cd "$build"
if [ "${CTFGEN_SLOW_TESTS:-0}" = "1" ]; then
  ctest --output-on-failure -j 2
else
  ctest --output-on-failure -j 2 -LE slow
fi
