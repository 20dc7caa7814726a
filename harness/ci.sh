#!/usr/bin/env bash
# Test the harness against a real torch on CPU. Creates (or reuses) the virtualenv
# $REPO/.venv-harness, installs torch the light way (requirements-torch-cpu.txt explains), the
# test requirements and the harness itself, then runs pytest and exits with pytest's status.
# Needs only python3 (3.9+) with pip and access to PyPI. HARNESS_VENV overrides the venv path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="${HARNESS_VENV:-$REPO/.venv-harness}"
PYTHON="$(command -v python3.11 || command -v python3)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "harness/ci.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

start=$SECONDS
# Both installs are no-ops when the venv already has the pinned versions. pip then reports
# triton, cuda-bindings and cuda-toolkit as missing requirements of torch: that is intended.
"${PIP[@]}" install -q --no-deps -r "$HERE/requirements-torch-cpu.txt"
"${PIP[@]}" install -q -r "$HERE/requirements-test.txt"
"${PIP[@]}" install -q --no-deps --force-reinstall "$HERE"
echo "harness/ci.sh: environment ready in $((SECONDS - start)) s ($(du -sh "$VENV" | cut -f1) in $VENV)"

cd "$REPO"
set +e
"$VENV/bin/python" -m pytest harness/tests -q -p no:cacheprovider
status=$?
exit "$status"
