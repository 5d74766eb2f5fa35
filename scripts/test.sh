#!/usr/bin/env bash
# The test command: installs what the end-to-end tests drive and a fresh
# Debian/Ubuntu machine with Rust lacks, then runs every test.
#
#   Debian: chromium, chromium-driver (the demo in a real browser), pushpin
#           (the baseline the benchmark harness and the conformance suite
#           compare against), python3-pip, nodejs, npm, iproute2 (the fault
#           campaign's network namespaces; it runs as root), prometheus
#           (promtool checks deploy/prometheus's alert rules and their tests).
#   PyPI:   gripcontrol; PyJWT, pytest and websockets (py/'s tests);
#           grpcio with its health and reflection modules (a stock gRPC
#           client for tests/e2e/grpc_discovery.rs);
#   npm:    @fanoutio/grip (tests/e2e/grip), the unmodified
#           GRIP libraries a Pushpin backend uses; js/'s dev dependencies
#           (typescript, ws) for the TypeScript packages; Next.js and React
#           for examples/nextjs-chat.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh security`).
set -euo pipefail
cd "$(dirname "$0")/.."

# apt needs root: as root directly, else through sudo when there is one.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to install: $*" >&2; return 1
  fi
}

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v pushpin >/dev/null || missing+=(pushpin)
command -v python3 >/dev/null || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v npm >/dev/null || missing+=(nodejs npm)
# The fault campaign (bench/tests/faults.rs) puts nodes in network namespaces.
command -v ip >/dev/null || missing+=(iproute2)
# deploy/prometheus's rules and the dashboard's queries (tests/e2e/alerts.rs).
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PyPI packages: installed for this user, or where pip may put them.
pip_install() {
  python3 -m pip install --quiet --user "$@" 2>/dev/null ||
    python3 -m pip install --quiet "$@" 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages "$@"
}
python3 -c 'import gripcontrol' 2>/dev/null || pip_install gripcontrol
# py/ (the Python library: PyJWT; its tests: pytest, and websockets for a
# real client) and the stock gRPC client the discovery test drives.
python3 -c 'import jwt, pytest, websockets' 2>/dev/null || pip_install 'PyJWT>=2.4' pytest websockets
python3 -c 'import grpc_health, grpc_reflection' 2>/dev/null ||
  pip_install grpcio grpcio-health-checking grpcio-reflection
if [ ! -d tests/e2e/grip/node_modules/@fanoutio/grip ]; then
  (cd tests/e2e/grip && npm ci --silent --no-audit --no-fund)
fi

# The TypeScript packages (js/): their own unit tests, and the build the
# end-to-end tests drive (js/client against a real gateway).
(cd js && npm ci --silent --no-audit --no-fund && npm run build --silent && npm test --silent)
# The Next.js example, built as its users build it (the end-to-end tests
# serve it with `next start`); its output is shown only if it fails.
(
  cd examples/nextjs-chat
  npm ci --silent --no-audit --no-fund
  if ! out=$(NEXT_TELEMETRY_DISABLED=1 npm run build 2>&1); then echo "$out" >&2; exit 1; fi
)

# What no compiler checks: no import cycles between modules, and no
# reference to a document outside the repository.
python3 scripts/check-structure.py

# The Python library's tests, against the `slip dev` built here.
cargo build --quiet --bin slip
(cd py && SLIP_BIN="$PWD/../target/debug/slip" PYTHONPATH=src python3 -m pytest -q -p no:cacheprovider tests)

cargo test --workspace "$@"
