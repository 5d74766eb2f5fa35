#!/usr/bin/env bash
# Side by side with Pushpin on this machine: builds the release binaries,
# installs Pushpin if it is missing, runs every scenario on both gateways at
# each size, prints a markdown table with the ratio ours / Pushpin, and writes
# the raw results (docs/bench/results.json), the charts (docs/bench/*.svg) and
# the table into docs/benchmarks.md.
#
#   bench/run.sh                                   # default sizes: 1k, 5k, 19k
#   bench/run.sh --idle 1000,5000 --fanout 1000 --messages 50
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pushpin >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pushpin >/dev/null
fi
cargo build --release -q -p slip -p slip-bench

out=(--out docs/bench --doc docs/benchmarks.md)
# Gateways on CPU 0; the load generator and the backend on CPU 1.
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  echo "Pinning: gateway processes on CPU 0, clients and backend on CPU 1"
  taskset -c 1 ./target/release/slip-bench --gateway-cpus 0 compare "${out[@]}" "$@"
else
  ./target/release/slip-bench compare "${out[@]}" "$@"
fi
