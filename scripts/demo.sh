#!/usr/bin/env bash
# Sets up, builds and runs the main job: `ctfgen demo` on Fashion-MNIST (tokenizer -> clusters ->
# stage 1 + stage 2 (+ baseline) -> a sample grid per class). Extra arguments go to `ctfgen demo`,
# e.g. `scripts/demo.sh --preset full`. The work directory (default runs/demo) is reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
build=${CTFGEN_BUILD_DIR:-$root/build}
exec "$build/apps/ctfgen" demo --work "$root/runs/demo" "$@"
