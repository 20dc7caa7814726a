#!/usr/bin/env bash
# Tests of the `driftscope` wheel: builds it (python/build.sh), installs it into a new, clean
# venv (target/py-clean, recreated each run, with pytest, pandas and tqdm), then runs
# python/tests with that venv's python: the API against the venv's `driftscope` command on
# reference_dumps/, the notebook-style display, docs/python.md's example, DumpError. The
# collector's tests run against the same wheel in harness/ci.sh (they need torch).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
VENV="$REPO/target/py-clean"
PYTHON="$(command -v python3.11 || command -v python3)"

# Lint the bindings as .ci/run lints the main crate (their own workspace, so not covered there).
cargo fmt --check --manifest-path "$HERE/Cargo.toml"
CARGO_TARGET_DIR="$REPO/target" cargo clippy --release --locked --manifest-path "$HERE/Cargo.toml" -- -D warnings

bash "$HERE/build.sh"
wheel="$(ls "$REPO"/target/wheels/driftscope-*.whl)"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q "$wheel" -r "$HERE/requirements-test.txt"

# From the repository root: no source folder named `driftscope` shadows the installed package.
cd "$REPO"
"$VENV/bin/python" -m pytest python/tests -q -p no:cacheprovider
