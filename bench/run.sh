#!/usr/bin/env bash
# Side by side with Pushpin on this machine: builds the release binaries,
# installs Pushpin if it is missing, and prints a markdown table of every
# scenario at each size with the ratio ours / Pushpin.
#
#   bench/run.sh                       # default sizes
#   bench/run.sh --idle 1000,10000 --fanout 1000,5000 --messages 200
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pushpin >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pushpin >/dev/null
fi
cargo build --release -q -p slip -p slip-bench

echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "Versions: $(./target/release/slip --version), Pushpin $(dpkg-query -W -f '${Version}' pushpin)"
echo
# Gateways on CPU 0; the load generator and the backend on CPU 1.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  echo "Pinning: gateway processes on CPU 0, clients and backend on CPU 1"
  taskset -c 1 ./target/release/slip-bench --gateway-cpus 0 compare "$@"
else
  ./target/release/slip-bench compare "$@"
fi
