#!/usr/bin/env bash
# driftscope on aarch64, the CPU of Ascend hosts (docs/performance.md, issue 19): clippy for
# the target, then the library's tests and the integration tests built for aarch64 and run
# under qemu-user (the generic metric kernel, which aarch64 runs, against the scalar f64 path;
# memory-mapped dump files; every reader). Installs the Rust target with rustup and
# gcc-aarch64-linux-gnu, its libc and qemu-user with apt-get when missing (needs root).
# Builds into target/aarch64 so the host's target/release is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=aarch64-unknown-linux-gnu

if ! rustup target list --installed | grep -qx "$T"; then
    rustup target add "$T"
fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null ||
    [ ! -d /usr/aarch64-linux-gnu/lib ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu \
        libc6-dev-arm64-cross qemu-user >/dev/null
fi
export CARGO_TARGET_DIR=$PWD/target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc

cargo clippy --release --target "$T" --all-targets -- -D warnings
# The integration tests run the command line too: an aarch64 binary the host cannot exec
# (no binfmt_misc here), so they get a wrapper that runs it under qemu (tests/common: bin()).
# A test that runs its own binary again (truncated.rs) runs it the same way.
export DRIFTSCOPE_TEST_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export DRIFTSCOPE_TEST_BIN=$CARGO_TARGET_DIR/driftscope-qemu
mkdir -p "$CARGO_TARGET_DIR"
printf '#!/bin/sh\nexec %s %s "$@"\n' "$DRIFTSCOPE_TEST_RUNNER" \
    "$CARGO_TARGET_DIR/$T/release/driftscope" >"$DRIFTSCOPE_TEST_BIN"
chmod +x "$DRIFTSCOPE_TEST_BIN"
cargo test --release --target "$T" --lib --test tests
echo "tests/aarch64/run.sh: clippy and the library and integration tests pass on $T (qemu-user)"
