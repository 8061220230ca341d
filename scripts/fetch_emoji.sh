#!/usr/bin/env bash
# Installs the emoji images used by the "emoji" dataset: npm package emoji-datasource-google@16.0.0
# (emoji.json + img/google/64/*.png) into DIR/node_modules/emoji-datasource-google.
# Usage: scripts/fetch_emoji.sh [DIR]   (default ./data/emoji)
set -euo pipefail
dir=${1:-data/emoji}
version=16.0.0
command -v npm >/dev/null || { echo "fetch_emoji.sh: npm is not installed" >&2; exit 1; }
mkdir -p "$dir"
pkg="$dir/node_modules/emoji-datasource-google"
if [[ -f "$pkg/emoji.json" ]] && grep -q "\"version\": \"$version\"" "$pkg/package.json" 2>/dev/null; then
  echo "emoji-datasource-google@$version already in $pkg" >&2
else
  npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts "emoji-datasource-google@$version" >&2
fi
test -f "$pkg/emoji.json" || { echo "fetch_emoji.sh: $pkg/emoji.json missing after install" >&2; exit 1; }
n=$(find "$pkg/img/google/64" -name '*.png' | wc -l)
echo "emoji-datasource-google@$version: $n PNGs of 64x64 in $pkg/img/google/64" >&2
