#!/usr/bin/env bash
# CI: the wheel is the product. Build it (and the sdist, and a wheel from the sdist), install it
# alone into a fresh venv, and run serve, the demo and the bench from a directory outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore CARGO_TERM_COLOR=never
# Nothing of the checkout may leak into the installed package's runs.
unset PYTHONPATH
start=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - start )) s)"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/provgraph-wheel.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

step "wheel: maturin build --release (cargo reuses ./target)"
python3 -m maturin build --release --locked --out "$work/dist"
wheel=$(ls "$work"/dist/provgraph-*.whl)

step "sdist: maturin sdist, then a wheel built from it alone"
python3 -m maturin sdist --out "$work/sdist"
sdist=$(ls "$work"/sdist/provgraph-*.tar.gz)
# Same cargo target dir, so only the workspace crates compile again; no build isolation, so the
# maturin already installed builds it (no index needed).
CARGO_TARGET_DIR="$repo/target" python3 -m pip wheel --quiet --no-deps --no-build-isolation \
  -w "$work/from-sdist" "$sdist"

step "both wheels hold the same files, the package data included"
python3 - "$wheel" "$work"/from-sdist/provgraph-*.whl <<'EOF'
import sys
import zipfile

def names(path: str) -> set[str]:
    with zipfile.ZipFile(path) as z:
        # RECORD lists hashes, which differ between two builds of the extension.
        return {n for n in z.namelist() if not n.endswith(".dist-info/RECORD")}

wheel, from_sdist = names(sys.argv[1]), names(sys.argv[2])
assert wheel == from_sdist, f"only in the wheel: {sorted(wheel - from_sdist)}; only from the sdist: {sorted(from_sdist - wheel)}"
needed = ["provgraph/examples/bundles/authz/.manifest",
          "provgraph/examples/bundles/authz/provgraph/authz/policy.rego",
          "provgraph/examples/bundles/authz/provgraph/authz/data.json",
          "provgraph/bench/k6/graph.js", "provgraph/bench/k6/lib.js",
          "provgraph/service/openapi.json", "provgraph/py.typed", "provgraph/_core.pyi"]
missing = [n for n in needed if n not in wheel]
assert not missing, f"not in the wheel: {missing}"
assert any(n.startswith("provgraph/_core.") and n.endswith(".so") for n in wheel), "no extension module"
print(f"{len(wheel)} files, the same in both wheels; package data present")
EOF

step "fresh venv, the wheel alone (no extras)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"
py=("$work/venv/bin/python" -I)
mkdir "$work/run"
cd "$work/run"
"${py[@]}" - "$repo" <<'EOF'
import sys
from pathlib import Path

import provgraph

where = Path(provgraph.__file__).resolve()
assert not where.is_relative_to(Path(sys.argv[1]).resolve()), f"provgraph imported from the checkout: {where}"
assert where.is_relative_to(Path(sys.prefix).resolve()), f"provgraph not from the venv: {where}"
print("provgraph from", where.parent)
EOF

step "provgraph serve (the console script) answers /healthz and serves its contract"
export PROVGRAPH_ADMIN_KEY="ci-wheel-$(date +%s%N)"
port=$("${py[@]}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$work/venv/bin/provgraph" serve --host 127.0.0.1 --port "$port" --data-dir "$work/run/data" \
  >"$work/serve.log" 2>&1 &
server_pid=$!
"${py[@]}" - "$port" <<'EOF' || { cat "$work/serve.log"; exit 1; }
import json
import os
import sys
import time
import urllib.request

from provgraph.policy import load_example_bundle

base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as r:
            assert r.status == 200
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
with urllib.request.urlopen(f"{base}/openapi.json", timeout=5) as r:
    assert json.load(r)["paths"], "empty /openapi.json"
# The bundle shipped as package data uploads and activates.
req = urllib.request.Request(f"{base}/v1/bundles/authz", data=load_example_bundle(), method="PUT",
                             headers={"Authorization": f"Bearer {os.environ['PROVGRAPH_ADMIN_KEY']}",
                                      "Content-Type": "application/gzip"})
with urllib.request.urlopen(req, timeout=10) as r:
    body = json.load(r)
    assert r.status in (200, 201) and body["active"] is True, body
print("serve: /healthz, /openapi.json and the example bundle upload OK")
EOF
kill "$server_pid"
wait "$server_pid" || true
server_pid=""

step "python -m provgraph.bench --help and every scenario's --help"
"${py[@]}" -m provgraph.bench --help
scenarios=$("${py[@]}" -c 'from provgraph.bench.__main__ import SCENARIOS; print(" ".join(SCENARIOS))')
for s in $scenarios; do
  "${py[@]}" -m provgraph.bench "$s" --help >/dev/null
  echo "  $s --help OK"
done
"$work/venv/bin/provgraph" --help >/dev/null

step "provgraph demo --quick, outside the checkout"
"$work/venv/bin/provgraph" demo --quick --out "$work/run/demo"
"${py[@]}" - "$work/run/demo" <<'EOF'
import json
import math
import sys
from pathlib import Path

out = Path(sys.argv[1])
report = json.loads((out / "demo.json").read_text())
assert 0 < report["seconds"] < 3600, report["seconds"]
rows = report["table"]
assert rows, "empty demo table"
for row in rows:
    for col in ("base_p50_ms", "base_p99_ms", "opt_p50_ms", "opt_p99_ms"):
        assert math.isfinite(row[col]) and row[col] > 0, (row["flow"], col, row[col])
flows = " ".join(row["flow"] for row in rows)
for part in ("Q1", "/decide", "actions:batch", "P1 preflight+execute"):
    assert part in flows, f"no {part} row in the demo table"
assert set(report["actions"]["p1"]["verdicts"]) == {"baseline", "optimized"}
assert (out / "demo.md").read_text().startswith("# provgraph demo")
print(f"demo report OK: {len(rows)} rows, {report['seconds']:.0f} s")
EOF

step "done"
