#!/usr/bin/env bash
# Test the collector (driftscope.harness, in the `driftscope` wheel) against a real torch on
# CPU. Creates (or reuses) the virtualenv $REPO/.venv-harness, installs torch the light way
# (requirements-torch-cpu.txt explains), the test requirements and the driftscope wheel that
# python/build.sh builds, then runs pytest on the installed package and exits with its status.
# Needs python3 (3.9+) with pip, access to PyPI, and cargo. HARNESS_VENV overrides the venv path.
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
# The collector ships in the driftscope wheel (older venvs hold it as driftscope-harness).
bash "$REPO/python/build.sh"
"${PIP[@]}" uninstall -q -y driftscope-harness 2>/dev/null || true
"${PIP[@]}" install -q --no-deps --force-reinstall "$REPO"/target/wheels/driftscope-*.whl
echo "harness/ci.sh: environment ready in $((SECONDS - start)) s ($(du -sh "$VENV" | cut -f1) in $VENV)"

cd "$REPO"
set +e
"$VENV/bin/python" -m pytest harness/tests -q -p no:cacheprovider
status=$?
exit "$status"
