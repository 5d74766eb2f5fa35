#!/usr/bin/env bash
# WebSocket conformance: the Autobahn test suite's fuzzing client against
# `slip dev` and an echo backend, on this machine's loopback. Needs Python
# 2.7 with autobahntestsuite 0.8.2 (the suite's last release runs only
# there; pyenv provides it):
#
#   pyenv install 2.7.18 && ~/.pyenv/versions/2.7.18/bin/pip install autobahntestsuite==0.8.2
#   bench/autobahn/run.sh                  # WSTEST=/path/to/wstest to choose
#
# Writes the suite's report to target/autobahn/ and exits non-zero if any
# case failed (or was not strict where strictness is required: 6.4.x).
# Cases 9.x (messages up to 16 MiB, past what a gateway relays), 12.x and
# 13.x (permessage-deflate, not negotiated) are left out, as for Pushpin.
set -euo pipefail
cd "$(dirname "$0")/../.."

# pyenv's own copy first: a `wstest` on PATH may be pyenv's shim, which
# fails unless 2.7.18 is the selected version.
if [ -z "${WSTEST:-}" ]; then
  WSTEST="$HOME/.pyenv/versions/2.7.18/bin/wstest"
  [ -x "$WSTEST" ] || WSTEST=$(command -v wstest || true)
fi
[ -n "$WSTEST" ] && [ -x "$WSTEST" ] || { echo "no wstest: see the top of $0" >&2; exit 2; }
cargo build --release -q -p slip

out=target/autobahn
rm -rf "$out" && mkdir -p "$out"
secret=$(./target/release/slip gen-secret)
PORT=3001 python3 bench/autobahn/echo.py & echo_pid=$!
./target/release/slip dev --listen 127.0.0.1:9001 --control-listen 127.0.0.1:9071 \
  --target-url http://127.0.0.1:3001/ --jwt-secret "$secret" --target-binary \
  --max-message-bytes 16777216 --max-outbound-bytes 983040 >"$out/slip.log" 2>&1 & slip_pid=$!
trap 'kill $echo_pid $slip_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:9001/healthz && break
  sleep 0.1
done

cat >"$out/fuzzingclient.json" <<JSON
{
  "outdir": "./reports",
  "servers": [{"agent": "slip", "url": "ws://127.0.0.1:9001"}],
  "cases": ["*"],
  "exclude-cases": ["9.*", "12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
(cd "$out" && "$WSTEST" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1)

python3 - "$out/reports/index.json" <<'PY'
import collections, json, sys
results = json.load(open(sys.argv[1]))["slip"]
counts = collections.Counter(r["behavior"] for r in results.values())
print("Autobahn fuzzingclient against slip dev:", dict(sorted(counts.items())))
bad = sorted(case for case, r in results.items()
             if r["behavior"] in ("FAILED", "UNIMPLEMENTED")
             or (case.startswith("6.4.") and r["behavior"] != "OK"))
for case in bad:
    print("  not passed:", case, results[case]["behavior"], results[case].get("behaviorClose"))
sys.exit(1 if bad else 0)
PY
