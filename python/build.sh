#!/usr/bin/env bash
# Builds the `driftscope` wheel into target/wheels/: the `driftscope` binary with cargo, then
# the extension module and the package with maturin (installed into target/py-build from
# requirements-build.txt). Needs cargo and python3 (3.9+) with pip and access to PyPI.
# Both builds share ../target with the main crate, so after `cargo build --release` only the
# bindings (python/src) and pyo3 are compiled. docs/python.md has the layout and the numbers.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
export CARGO_TARGET_DIR="$REPO/target"
BUILD_VENV="$REPO/target/py-build"
PYTHON="$(command -v python3.11 || command -v python3)"

start=$SECONDS
if [ ! -x "$BUILD_VENV/bin/maturin" ]; then
    "$PYTHON" -m venv "$BUILD_VENV"
fi
"$BUILD_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements-build.txt"

# The console command is the binary itself, shipped as a wheel "script" (maturin's data dir):
# maturin cannot put a [[bin]] of another crate into a pyo3 wheel, and a Python wrapper that
# execs a binary would add an interpreter start to every run.
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" --bin driftscope
mkdir -p "$HERE/build/data/scripts"
install -m 755 "$REPO/target/release/driftscope" "$HERE/build/data/scripts/driftscope"
strip "$HERE/build/data/scripts/driftscope"

rm -f "$REPO"/target/wheels/driftscope-*.whl
"$BUILD_VENV/bin/maturin" build --release --locked --manifest-path "$HERE/Cargo.toml" \
    --out "$REPO/target/wheels"
wheel="$(ls "$REPO"/target/wheels/driftscope-*.whl)"
echo "python/build.sh: built $wheel ($(du -h "$wheel" | cut -f1)) in $((SECONDS - start)) s"
