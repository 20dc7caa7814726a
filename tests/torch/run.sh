#!/usr/bin/env bash
# Builds the `torch` feature (replay of any ATen op through libtorch, docs/replay.md) against
# the libtorch inside the harness's PyTorch ($REPO/.venv-harness, which harness/ci.sh installs)
# and runs the replay tests with it. Part of the README's test command, after harness/ci.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${HARNESS_VENV:-$REPO/.venv-harness}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "tests/torch/run.sh: no PyTorch at $VENV: run harness/ci.sh first" >&2
    exit 1
fi
version="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"

# torch-sys finds libtorch inside the Python package of the first `python` on PATH.
export PATH="$VENV/bin:$PATH" LIBTORCH_USE_PYTORCH=1
case "$version" in
    2.13.0) ;; # what tch 0.26 was generated for
    2.15.*)
        # The harness pins 2.15: its headers need C++20, and it dropped torch::cholesky and
        # torch::qr, which tch's generated wrappers still call (compat-2.15.h supplies them).
        export LIBTORCH_BYPASS_VERSION_CHECK=1
        export CXXFLAGS="-std=c++20 -include $HERE/compat-2.15.h"
        ;;
    *)
        echo "tests/torch/run.sh: PyTorch $version: tch 0.26 is known to build with 2.13.0 and, with compat-2.15.h, 2.15" >&2
        exit 1
        ;;
esac
echo "tests/torch/run.sh: building the torch feature against PyTorch $version"

cd "$REPO"
cargo clippy --release --features torch --lib --test tests -- -D warnings
cargo test --release --features torch --test tests -- torch_replay:: replay:: replay_ops::
