#!/usr/bin/env bash
# The installed package (docs/library.md) works for a program outside the ctfgen tree:
#  1. `cmake --install BUILD_DIR --prefix <tmp>/prefix` installs the binary, libctfgen_core.a, the
#     headers (every quoted include of an installed header resolves inside the prefix) and the
#     CMake package;
#  2. examples/sample_one, copied out of the source tree, configures with find_package(ctfgen)
#     from that prefix only, and builds (Release): the one slow step, about a minute;
#  3. the installed ctfgen makes tiny fixtures (8x8 images, a 16-code tokenizer, 4 clusters, tiny
#     CTF stage 1 + stage 2 and baseline, one training step each: seconds), the example samples
#     one image in CTF and in baseline mode, and the PNG is 8x8 and byte-identical to
#     `ctfgen sample` with the same seed and class;
#  4. a missing model file makes the example exit 1 with a message naming the file.
# Usage: install_package.sh SOURCE_DIR BUILD_DIR   (BUILD_DIR built; CMAKE overrides `cmake`)
set -euo pipefail
src="$(cd "$1" && pwd)"
build="$(cd "$2" && pwd)"
cmake="${CMAKE:-cmake}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "[$((SECONDS))s] $*"; }
prefix="$tmp/prefix"
# Skip ctfgen's start-up re-execution for the OpenBLAS kernel choice (both programs call
# runtime::prepare_process); one thread, as the other CLI tests.
export CTFGEN_BLAS_PREPARED=1 OMP_NUM_THREADS=1

step "install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log"; fail "cmake --install failed"; }
for f in bin/ctfgen lib/libctfgen_core.a include/ctfgen/pipeline/generate.h \
         lib/cmake/ctfgen/ctfgenConfig.cmake lib/cmake/ctfgen/ctfgenConfigVersion.cmake \
         lib/cmake/ctfgen/ctfgenTargets.cmake; do
  [ -e "$prefix/$f" ] || fail "$f was not installed"
done
[ ! -e "$prefix/include/ctfgen/pch.h" ] && [ ! -e "$prefix/include/ctfgen/bench_support" ] \
  || fail "pch.h or bench_support/ was installed"
(cd "$prefix/include/ctfgen" && find . -name '*.h' | sort | while read -r h; do
  sed -n 's/^#include "\([^"]*\)".*/\1/p' "$h" | while read -r inc; do
    [ -e "$inc" ] || { echo "$h includes \"$inc\", which is not installed"; exit 1; }
  done
done) || fail "an installed header includes a header that is not installed"

step "configure and build examples/sample_one against the prefix"
cp -r "$src/examples/sample_one" "$tmp/example"
cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")"
"$cmake" -S "$tmp/example" -B "$tmp/example-build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  ${cxx:+-DCMAKE_CXX_COMPILER="$cxx"} >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "the example does not configure against the installed package"; }
grep -qx "ctfgen_DIR:PATH=$prefix/lib/cmake/ctfgen" "$tmp/example-build/CMakeCache.txt" \
  || fail "find_package(ctfgen) did not take the package from $prefix"
"$cmake" --build "$tmp/example-build" >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log"; fail "the example does not build against the installed package"; }
if grep -rqs -e "$src/src" -e "$build" "$tmp/example-build/CMakeFiles/sample_one.dir/flags.make" \
     "$tmp/example-build/CMakeFiles/sample_one.dir/link.txt"; then
  fail "the example build reaches into the ctfgen source or build tree"
fi
example="$tmp/example-build/sample_one"

step "tiny fixtures with the installed ctfgen"
d="$tmp/fixtures"
mkdir -p "$d"
python3 - "$d" <<'EOF'
import json, os, struct, sys, zlib
d = sys.argv[1]
def png(w, h, seed):
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + seed * 31) % 256 for x in range(w * 3))
                    for y in range(h))
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
for c in ("a", "b"):
    os.makedirs(os.path.join(d, "imgs", c))
    for i in range(6):
        with open(os.path.join(d, "imgs", c, "%d.png" % i), "wb") as f:
            f.write(png(8, 8, i + 10 * (c == "b")))
with open(os.path.join(d, "vq.json"), "w") as f:  # the tiny tokenizer of tests/cli/bad_inputs.py
    json.dump({"codebook_size": 16, "codebook_dim": 4, "in_channels": 3, "base_channels": 4,
               "encoder_ch_mult": [1, 1], "decoder_ch_mult": [1, 1], "encoder_num_res_blocks": 1,
               "decoder_num_res_blocks": 1, "z_channels": 4, "norm_groups": 2, "image_size": 8}, f)
EOF
ctfgen() { (cd "$d" && "$prefix/bin/ctfgen" --threads 1 -v 0 "$@") >>"$tmp/fixtures.log" 2>&1 \
  || { cat "$tmp/fixtures.log"; fail "ctfgen $* failed"; }; }
ctfgen train-vq --dataset imagefolder --data-path imgs --config vq.json --steps 2 --batch 4 \
  --eval-limit 2 --out vq
ctfgen encode --vq vq/vq.safetensors --dataset imagefolder --data-path imgs --out tok
ctfgen cluster --vq vq/vq.safetensors --k 4 --restarts 1 --out clusters.safetensors
gen=(--tokens tok --preset tiny --steps 1 --batch 2 --val-batches 0)
ctfgen train-ar "${gen[@]}" --clusters clusters.safetensors --out stage1
ctfgen train-aux "${gen[@]}" --clusters clusters.safetensors --out stage2
ctfgen train-ar "${gen[@]}" --out baseline

png_size() {  # width x height from the PNG header
  python3 -c 'import struct, sys
b = open(sys.argv[1], "rb").read(24)
assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", "not a PNG"
print("%dx%d" % struct.unpack(">II", b[16:24]))' "$1"
}
tokenizer=(--tokenizer "$d/vq/vq.safetensors")
ctf=(--model "$d/stage1/model.safetensors" --aux "$d/stage2/model.safetensors"
     --clusters "$d/clusters.safetensors")
for mode in ctf baseline; do
  step "sample one image ($mode) with the example"
  if [ "$mode" = ctf ]; then models=("${ctf[@]}"); else models=(--model "$d/baseline/model.safetensors"); fi
  "$example" "${tokenizer[@]}" "${models[@]}" --class 1 --seed 7 --out "$tmp/$mode.png" \
    >"$tmp/$mode.log" 2>&1 || { cat "$tmp/$mode.log"; fail "the example failed ($mode)"; }
  grep -q "$mode, class 1" "$tmp/$mode.log" || { cat "$tmp/$mode.log"; fail "no $mode summary line"; }
  [ "$(png_size "$tmp/$mode.png")" = 8x8 ] || fail "$mode.png is not an 8x8 PNG"
  (cd "$d" && "$prefix/bin/ctfgen" --threads 1 -v 0 sample "${tokenizer[@]}" "${models[@]}" \
    --class 1 --n 1 --seed 7 --out "$tmp/sample_$mode") >"$tmp/sample.log" 2>&1 \
    || { cat "$tmp/sample.log"; fail "ctfgen sample failed ($mode)"; }
  cmp -s "$tmp/$mode.png" "$tmp/sample_$mode/images/0000_class1.png" \
    || fail "the example's $mode image differs from ctfgen sample's with the same seed"
done

step "a missing model file"
missing="$d/no_such_model.safetensors"
set +e
"$example" "${tokenizer[@]}" --model "$missing" --out "$tmp/missing.png" >"$tmp/missing.log" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$tmp/missing.log"; fail "exit code $rc for a missing model file, expected 1"; }
grep -q "sample_one: error: .*$missing" "$tmp/missing.log" \
  || { cat "$tmp/missing.log"; fail "the error does not name $missing"; }
[ ! -e "$tmp/missing.png" ] || fail "an image was written despite the error"
step "install package: ok"
