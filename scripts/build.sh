#!/usr/bin/env bash
# Configures and builds ctfgen (Release) into build/. Usage: scripts/build.sh [extra cmake args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CTFGEN_BUILD_DIR:-$root/build}
jobs=${CTFGEN_JOBS:-$(nproc)}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >&2
cmake --build "$build" -j "$jobs" >&2
