#!/usr/bin/env bash
# Installs missing packages, builds coapgwd (Release) in build/ and runs it in
# the foreground with the sample configuration. Extra arguments go to coapgwd,
# e.g. scripts/run.sh --log-level debug
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target coapgwd -j"$(nproc)"
# A git checkout leaves the sample keys file readable by everyone, which coapgwd refuses.
chmod go-rwx config/psk-keys.yaml
exec build/daemon/coapgwd --config config/gateway.yaml "$@"
