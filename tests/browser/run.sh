#!/usr/bin/env bash
# Browser test of the HTML report: installs Debian's chromium if missing, writes a report from
# reference_dumps with the release binary, and checks it in headless Chromium over the DevTools
# protocol (tests/browser/check.py, Python stdlib only). Screenshot: target/browser-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
BIN=target/release/driftscope
[ -x "$BIN" ] || cargo build --release
OUT=target/browser-artifacts
mkdir -p "$OUT"
R=reference_dumps/h200/llama/msprobe
"$BIN" report "$R/cpu_fp32" "$R/cuda_fp16_fault_silu_l1" -o "$OUT/report" >/dev/null
"$BIN" compare "$R/cpu_fp32" "$R/cuda_fp16_fault_silu_l1" --json "$OUT/compare.json" >/dev/null
python3 tests/browser/gen_big.py "$OUT/big" >/dev/null
"$BIN" report "$OUT/big/ref" "$OUT/big/dev" -o "$OUT/big/report" >/dev/null
python3 tests/browser/check.py --chromium chromium --report "$OUT/report/index.html" \
    --compare "$OUT/compare.json" --screenshot "$OUT/report.png" --big-report "$OUT/big/report/index.html"
