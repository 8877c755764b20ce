#!/usr/bin/env bash
# Installs the Debian packages that coapgw's build, daemon and tests need.
# Idempotent: asks dpkg which packages are already installed and only calls
# apt-get (update + install) when at least one is missing, so a second run on a
# ready machine touches no network. Extra package names may be passed as
# arguments (e.g. scripts/install-deps.sh valgrind).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  clang libclang-rt-14-dev            # clang + libFuzzer/sanitizer runtimes
  libboost-dev libboost-program-options-dev
  libssl-dev openssl
  libyaml-cpp-dev prometheus-cpp-dev
  nlohmann-json3-dev                  # lib/api: parsing untrusted JSON request bodies
  libgtest-dev libgmock-dev googletest
  libcoap3-bin                        # coap-client-{notls,openssl,gnutls}: test peers
  python3 python3-prometheus-client python3-yaml   # integration tests
  systemd                             # systemd-analyze verify of the unit
  procps iproute2 curl
  # Several gateways (issue 18): nginx UDP balancing with njs (test_scaleout.py) and promtool
  # (docker/prometheus/alerts.yml).
  nginx-light libnginx-mod-stream libnginx-mod-stream-js prometheus
)
# kubectl --dry-run=client for docker/kubernetes/: Debian's kubectl unless one is already on PATH.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
packages+=("$@")

is_installed() {
  local status
  status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) || return 1
  [[ "$status" == "installed" ]]
}

missing=()
for pkg in "${packages[@]}"; do
  if ! is_installed "$pkg"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and sudo is missing; install as root: ${missing[*]}" >&2
    exit 1
  fi
  sudo_cmd=(sudo)
fi

"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
