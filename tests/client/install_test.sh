#!/bin/sh
# Installs the client library (cmake --install --component detcd-client)
# into a temp prefix and builds a small consumer against it twice: with
# CMake's find_package(detcd-client) and with pkg-config detcd-client.
# Usage: install_test.sh <build dir> <tests/client source dir>
set -eu
build=$1
src=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/detcd-install-test-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

cmake --install "$build" --component detcd-client --prefix "$prefix"
# Nothing installed may point back into the build or source tree.
if grep -rlE "$(realpath "$build")|$(realpath "$src")" "$prefix"; then
  echo "FAIL: installed files name the build or source tree" >&2
  exit 1
fi

echo "== find_package(detcd-client)"
cmake -S "$src/install_consumer" -B "$tmp/cmake" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
cmake --build "$tmp/cmake"
"$tmp/cmake/consumer"

echo "== pkg-config detcd-client"
pc=$(dirname "$(find "$prefix" -name detcd-client.pc)")
flags=$(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs detcd-client)
${CXX:-c++} -std=c++20 -O1 -o "$tmp/pkgconfig-consumer" \
  "$src/install_consumer/main.cc" $flags
"$tmp/pkgconfig-consumer"
echo "install test passed"
