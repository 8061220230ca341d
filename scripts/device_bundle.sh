#!/usr/bin/env bash
# Fills .device/ (ignored by git) with what a build on the lent GPU machine needs and cannot
# fetch there: the header-only libraries (nlohmann/json, CLI11, stb), the zlib and OpenSSL
# headers (their runtime libraries are on that machine), and googletest's sources, all copied
# from this Debian machine's packages (scripts/setup.sh installs them). Name .device in the
# device call's carry and configure with -DCTFGEN_DEPS_DIR=.device (scripts/gpu_check.sh does).
# Usage: scripts/device_bundle.sh [OUT_DIR]   (default: .device in the checkout)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/.device}"
need=(/usr/include/nlohmann/json.hpp /usr/include/CLI/CLI.hpp /usr/include/stb/stb_image.h
      /usr/include/zlib.h /usr/include/openssl/evp.h /usr/src/googletest/CMakeLists.txt)
for f in "${need[@]}"; do
  [ -e "$f" ] || { echo "device_bundle: $f is missing; run scripts/setup.sh first" >&2; exit 1; }
done
rm -rf "$out.tmp" && mkdir -p "$out.tmp/include"
cp -r /usr/include/nlohmann /usr/include/CLI /usr/include/stb /usr/include/openssl "$out.tmp/include/"
cp /usr/include/zlib.h /usr/include/zconf.h "$out.tmp/include/"
# OpenSSL's per-architecture headers (configuration.h, opensslconf.h).
cp /usr/include/x86_64-linux-gnu/openssl/*.h "$out.tmp/include/openssl/"
cp -r /usr/src/googletest "$out.tmp/googletest"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "device_bundle: $(du -sh "$out" | cut -f1) in $out"
