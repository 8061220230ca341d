#!/usr/bin/env bash
# Installs every Debian package ctfgen needs. Idempotent: installs only what is missing.
# Run as root (or with sudo available). Works on a fresh Debian 12 machine.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libtorch-dev            # libtorch 1.13 (CPU)
  libopenblas0-openmp     # fast BLAS that follows torch's OpenMP threads (never the pthread flavour)
  libgloo-dev             # headers that c10d's Gloo process group needs
  libstb-dev libcli11-dev nlohmann-json3-dev zlib1g-dev libssl-dev libzip-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  dataset-fashion-mnist   # the embedded default dataset
  python3-torch python3-numpy python3-scipy python3-torchvision  # reference tests only
  python3-matplotlib      # plots of scripts/experiment.py
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "[setup] all Debian packages present" >&2
fi

# The pthread OpenBLAS flavour fights torch's OpenMP threads; make sure the OpenMP one is active.
alt=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if [ -e "$alt" ]; then
  current=$(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || true)
  if [ "$current" != "$(readlink -f "$alt")" ]; then
    echo "[setup] selecting OpenBLAS (OpenMP) as libblas.so.3" >&2
    $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alt" >&2
  fi
fi
