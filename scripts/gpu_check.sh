#!/usr/bin/env bash
# The prepared GPU check of issue #7, for a session that is lent the GPU machine: one device call
# builds ctfgen against the CUDA-enabled libtorch of that machine's PyTorch, runs the test suite
# on cuda, and measures baseline vs CTF images/s at batch 64 for GPT-B and GPT-L-sized
# random-weight models (bf16 and fp32). Everything it reports lands in the output folder (at most
# 7 files, as the device tool brings back 8).
#
# Here, first:   bash scripts/device_bundle.sh        (fills .device/, which the call carries)
# Device call:   run(command="bash scripts/gpu_check.sh", carry=[".device"], timeout_s=600)
#                (the output folder defaults to $OUT there)
# Budget (one call may run 10 minutes): build up to 330 s on the machine's 16 cores (a rerun
# within 30 s of the last call finds build-gpu/ still there), bench up to 150 s, tests up to
# 150 s; each step has its own limit so the files always come back. A second call with
# CTFGEN_GPU_CHECK_FP32=1 adds the fp32 figures.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/ctfgen_gpu_check}}"
mkdir -p "$out"
summary="$out/summary.txt"
note() { echo "[$(date +%T)] $*" | tee -a "$summary"; }
section() { note "== $*"; }

section "machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                                 "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")' 2>&1
  nproc; g++ --version 2>&1 | head -1; cmake --version 2>&1 | head -1; } | tee -a "$summary"

section "build"
[ -d .device ] || { note "no .device folder: run scripts/device_bundle.sh here and carry .device"; exit 1; }
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
t0=$(date +%s)
if ! timeout 330 bash -c "cmake -S . -B build-gpu ${gen[*]} -DCMAKE_BUILD_TYPE=Release \
      -DCTFGEN_TORCH_PYTHON=$(command -v python3) -DCTFGEN_DEPS_DIR=$PWD/.device \
      -DCTFGEN_BUILD_BENCH=OFF && cmake --build build-gpu -j $(nproc)" >"$out/build.log" 2>&1; then
  note "build FAILED after $(( $(date +%s) - t0 )) s; the end of build.log:"
  grep -E "error|Error" "$out/build.log" | head -20 | tee -a "$summary"
  exit 1
fi
note "built in $(( $(date +%s) - t0 )) s"
exe=build-gpu/apps/ctfgen
"$exe" --device cuda info 2>&1 | tee -a "$summary"

section "bench: baseline vs CTF images/s at batch 64, GPT-B and GPT-L, random weights, bf16"
# With the PyTorch eager reference on the same GPU for GPT-B (logits checked first).
t0=$(date +%s)
timeout 150 "$exe" --device cuda bench --preset GPT-B,GPT-L --batches 64 --sections sample,python \
  --python "$(command -v python3)" --python-presets GPT-B --python-batches 64 --dtype bf16 \
  --repeats 2 --out "$out/bench_bf16.json" >"$out/bench_bf16.md" 2>>"$summary"
note "bench bf16: exit $? after $(( $(date +%s) - t0 )) s"

section "tests on cuda"
t0=$(date +%s)
CTFGEN_TEST_DEVICE=cuda timeout 150 ctest --test-dir build-gpu -j "$(nproc)" -LE slow --timeout 140 \
  >"$out/ctest.log" 2>&1
note "ctest exit $? after $(( $(date +%s) - t0 )) s: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)"
grep -E "\*\*\*Failed|Timeout|Not Run" "$out/ctest.log" | head -30 | tee -a "$summary"

if [ "${CTFGEN_GPU_CHECK_FP32:-0}" = 1 ]; then  # a second call, while the machine is still warm
  section "bench fp32"
  t0=$(date +%s)
  timeout 150 "$exe" --device cuda bench --preset GPT-B,GPT-L --batches 64 --sections sample \
    --no-python --dtype fp32 --repeats 1 --out "$out/bench_fp32.json" >"$out/bench_fp32.md" 2>>"$summary"
  note "bench fp32: exit $? after $(( $(date +%s) - t0 )) s"
fi
section "done"
