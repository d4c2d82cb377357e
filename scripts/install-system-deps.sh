#!/usr/bin/env bash
# Installs the Debian packages the C++ build needs, only those missing (idempotent, quick when
# everything is there). Needs root, or sudo. With --sanitize, also clang and its sanitizer
# and libFuzzer runtimes, for make test-sanitize and make fuzz.
set -euo pipefail

packages=(
  g++
  libcli11-dev          # ts-infer's flags
  nlohmann-json3-dev    # ts-infer --json, model metadata
  libgtest-dev          # C++ unit tests of the core
  libjpeg62-turbo-dev   # JPEG decoding
  libpng-dev            # PNG decoding
  libcpp-httplib-dev    # ts-infer serve: HTTP/1.1 server (cpp-httplib)
  libsimdjson-dev       # ts-infer serve: request bodies (JSON tensors at gigabytes a second)
  libgrpc++-dev         # ts-infer serve: the gRPC front (gRPC C++)
  libprotobuf-dev       # its messages (libgrpc++-dev does not always bring it)
  protobuf-compiler-grpc  # protoc and gRPC's plugin, for the service's generated code
  pkg-config            # finds cpp-httplib
  ccache                # faster rebuilds
)
if [ "${1:-}" = "--sanitize" ]; then
  packages+=(
    clang-14              # the sanitizer and fuzz build (libFuzzer is clang's)
    libclang-rt-14-dev    # ASan, UBSan and libFuzzer runtimes
  )
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing system packages: ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
