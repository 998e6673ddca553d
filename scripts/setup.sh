#!/usr/bin/env bash
# Set up provgraph on a fresh machine: Python packages and the release build of the Rust extension,
# and the one system tool the tests use (promtool, from Debian's prometheus: tests/test_metrics.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
if ! command -v promtool >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "setup: promtool not found: install Debian's prometheus package (as root) for tests/test_metrics.py" >&2
  fi
fi
python3 -m pip install --quiet 'maturin>=1.5,<2'
python3 -m pip install -e '.[test]'
python3 -c "import provgraph._core as c; print('provgraph._core', c.__version__)"
