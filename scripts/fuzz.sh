#!/usr/bin/env bash
# Builds and runs the libFuzzer harnesses in fuzz/ (clang++ with -fsanitize=fuzzer,address,undefined),
# separately from the main CMake build. Only the library sources the parsers need are compiled.
#
# Usage: scripts/fuzz.sh <target|all> [seconds]     run (default 120 s per target)
#        scripts/fuzz.sh build                       only build
# Targets: safetensors npy idx image config torch_import
# CTFGEN_FUZZ_NO_BUILD=1 runs the binaries already built (for parallel runs while sources change).
# Corpora: fuzz/corpus/<target>/ (committed). A run fuzzes a working copy under build-fuzz/ and then
# merges the new interesting inputs back into fuzz/corpus/<target>/ with libFuzzer's -merge=1 (only
# inputs that add coverage are kept). Crashes are written to build-fuzz/artifacts/<target>/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${CTFGEN_FUZZ_BUILD:-$root/build-fuzz}
CXX=${CXX:-clang++}
all_targets=(safetensors npy idx image config torch_import)
lib_sources=(core/fs.cpp core/log.cpp core/shape.cpp io/safetensors.cpp io/npy.cpp io/idx.cpp
             io/image_io.cpp data/dataset.cpp io/zip_reader.cpp io/pickle_reader.cpp
             io/torch_import.cpp io/checkpoint.cpp io/tensor_hash.cpp)
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize=vptr
       -fno-sanitize-recover=undefined -D_GLIBCXX_USE_CXX11_ABI=1 -DGLOG_CUSTOM_PREFIX_SUPPORT
       -I"$root/src" -isystem /usr/include/torch/csrc/api/include -isystem /usr/include/stb)
libs=(-Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -lstb -lz -lcrypto -lpthread -ldl)

newest_header() { find "$root/src" -name '*.h' -printf '%T@\n' | sort -n | tail -1; }

build() {
  mkdir -p "$out/obj"
  local hdr objs=() src obj
  hdr=$(newest_header)
  for src in "${lib_sources[@]}"; do
    obj="$out/obj/${src//\//_}.o"
    if [[ ! -f "$obj" || "$root/src/$src" -nt "$obj" ]] || \
       (( $(printf '%.0f' "$hdr") > $(stat -c %Y "$obj") )); then
      echo "compile $src" >&2
      "$CXX" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$root/src/$src" -o "$obj"
    fi
    objs+=("$obj")
  done
  for t in "${all_targets[@]}"; do
    local bin="$out/fuzz_$t" h="$root/fuzz/fuzz_$t.cpp"
    local stale=0
    [[ ! -x "$bin" || "$h" -nt "$bin" ]] && stale=1
    for o in "${objs[@]}"; do [[ "$o" -nt "$bin" ]] && stale=1; done
    if (( stale )); then
      echo "link fuzz_$t" >&2
      "$CXX" "${flags[@]}" -fsanitize=fuzzer "$h" "${objs[@]}" "${libs[@]}" -o "$bin"
    fi
  done
}

run() {
  local t=$1 secs=$2 corpus="$root/fuzz/corpus/$1" work="$out/corpus/$1" dict=()
  mkdir -p "$corpus" "$work" "$out/artifacts/$t"
  cp -n "$corpus"/* "$work"/ 2>/dev/null || true
  [[ -f "$root/fuzz/$t.dict" ]] && dict=(-dict="$root/fuzz/$t.dict")
  echo "== fuzz_$t for $secs s" >&2
  local log="$out/fuzz_$t.log" rc=0
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$out/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" "${dict[@]}" "$work" >"$log" 2>&1 || rc=$?
  grep -E "^stat::number_of_executed_units|^stat::new_units_added|^stat::peak_rss_mb" "$log" >&2 || true
  if (( rc != 0 )); then
    echo "fuzz_$t: FINDING (exit $rc), see $log and $out/artifacts/$t/" >&2
    tail -40 "$log" >&2
    return 1
  fi
  # Keep only inputs that add coverage to the committed corpus.
  local merged="$out/merged/$t"
  rm -rf "$merged" && mkdir -p "$merged"
  ASAN_OPTIONS=detect_leaks=0 "$out/fuzz_$t" -merge=1 -max_len=65536 "$merged" "$corpus" "$work" \
    >"$out/fuzz_${t}_merge.log" 2>&1
  rm -rf "$corpus" && mv "$merged" "$corpus"
  echo "fuzz_$t: no findings; corpus $(ls "$corpus" | wc -l) files, $(du -sk "$corpus" | cut -f1) KiB" >&2
}

what=${1:-}
secs=${2:-120}
[[ -n "$what" ]] || { sed -n '5,7p' "$0" >&2; exit 2; }
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found" >&2; exit 1; }
[[ "${CTFGEN_FUZZ_NO_BUILD:-0}" == 1 ]] || build
[[ "$what" == build ]] && exit 0
if [[ "$what" == all ]]; then targets=("${all_targets[@]}"); else targets=("$what"); fi
status=0
for t in "${targets[@]}"; do
  [[ -f "$root/fuzz/fuzz_$t.cpp" ]] || { echo "fuzz.sh: unknown target '$t'" >&2; exit 2; }
  run "$t" "$secs" || status=1
done
exit $status
