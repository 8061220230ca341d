#!/usr/bin/env bash
# The other build paths configure (compiling them takes minutes, so this stops at CMake):
#  1. libtorch from a Python install (CTFGEN_TORCH_PYTHON) with every other dependency taken from
#     the fallback folder scripts/device_bundle.sh makes, as on the lent GPU machine: the find
#     modules are switched off, the status lines and compile flags must show the fallbacks, the
#     wheel's ABI flag and Gloo;
#  2. a missing dependency without the fallback folder, and an interpreter without torch, stop
#     with an error that names the way out.
# Usage: build_paths.sh SOURCE_DIR
set -euo pipefail
src="$1"
# Needs Debian's -dev packages (the bundle's source) and python3-torch: skipped (77) elsewhere,
# for example on the lent GPU machine.
[ -e /usr/include/nlohmann/json.hpp ] && [ -e /usr/src/googletest/CMakeLists.txt ] &&
  /usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "skipped: no Debian -dev packages or python3-torch"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
off=()
for p in nlohmann_json CLI11 ZLIB OpenSSL GTest PkgConfig; do off+=("-DCMAKE_DISABLE_FIND_PACKAGE_$p=ON"); done

bash "$src/scripts/device_bundle.sh" "$tmp/deps" >/dev/null
cmake -S "$src" -B "$tmp/b" -DCTFGEN_TORCH_PYTHON=/usr/bin/python3 -DCTFGEN_DEPS_DIR="$tmp/deps" \
  -DCTFGEN_BUILD_BENCH=OFF -DCTFGEN_USE_PCH=OFF "${off[@]}" >"$tmp/log" 2>&1 \
  || { cat "$tmp/log"; fail "the Python-install configure failed"; }
grep -q "libtorch .* from /usr/lib/python3/dist-packages/torch" "$tmp/log" || fail "no libtorch status line"
for t in nlohmann_json::nlohmann_json CLI11::CLI11 PkgConfig::STB ZLIB::ZLIB OpenSSL::Crypto; do
  grep -q "$t: headers from $tmp/deps/include" "$tmp/log" || fail "$t did not use the fallback folder"
done
flags="$tmp/b/src/CMakeFiles/ctfgen_core.dir/flags.make"
grep -q "_GLIBCXX_USE_CXX11_ABI=1" "$flags" || fail "no ABI flag in $flags"
grep -q "USE_C10D_GLOO" "$flags" || fail "Gloo not enabled in $flags"
grep -q "dist-packages/torch/include/torch/csrc/api/include" "$flags" || fail "torch API headers missing"
[ -d "$tmp/b/googletest" ] || fail "googletest was not added from the fallback folder"

if cmake -S "$src" -B "$tmp/c" -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON >"$tmp/log2" 2>&1; then
  fail "configure without nlohmann_json and without CTFGEN_DEPS_DIR succeeded"
fi
grep -q "CTFGEN_DEPS_DIR" "$tmp/log2" || { cat "$tmp/log2"; fail "the error does not name CTFGEN_DEPS_DIR"; }

if cmake -S "$src" -B "$tmp/d" -DCTFGEN_TORCH_PYTHON=/bin/false >"$tmp/log3" 2>&1; then
  fail "configure with an interpreter without torch succeeded"
fi
grep -q "cannot import torch" "$tmp/log3" || { cat "$tmp/log3"; fail "the error does not say torch is missing"; }
echo "build paths: ok"
