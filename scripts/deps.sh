#!/usr/bin/env bash
# Installs the Debian packages detcd needs, only those that are missing.
# Sourced by scripts/run and scripts/test.
set -euo pipefail

DETCD_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libabsl-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev librapidcheck-dev
  libfmt-dev libzstd-dev libgoogle-perftools-dev
  libssl-dev libyaml-cpp-dev nlohmann-json3-dev openssl
  etcd-server etcd-client python3 curl golang-go golang-etcd-server-dev
  libcurl4-openssl-dev dnsmasq-base iproute2 libcrypt-dev libmicrohttpd-dev
  prometheus nftables libnghttp2-dev
)
# scripts/fuzz only (libFuzzer builds, fuzz/README.md).
DETCD_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)

detcd_install_deps() {
  local missing=()
  for p in "${DETCD_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Configures and builds into $1 (default: build) with build type $2.
detcd_build() {
  local dir="${1:-build}" type="${2:-Release}"
  shift 2 || true
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
  # Paths relative to the checkout, so every clone shares the cache.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$(nproc)"
}
