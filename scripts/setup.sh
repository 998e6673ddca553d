#!/usr/bin/env bash
# Set up provgraph on a fresh machine: Python packages and the release build of the Rust extension.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install --quiet 'maturin>=1.5,<2'
python3 -m pip install -e '.[test]'
python3 -c "import provgraph._core as c; print('provgraph._core', c.__version__)"
