#!/usr/bin/env python3
"""Writes two native-layout dumps of a deep network for the bisect benchmark (stdlib only).

Usage: gen_layers.py OUT [LAYERS] [ELEMENTS] [FAULT_AT]

OUT/ref and OUT/dev each hold LAYERS module outputs of ELEMENTS float32 values. The candidate
carries rounding-sized noise (relative 2^-12, like fp16) that accumulates slowly along the layers,
and from layer FAULT_AT on an extra 5% error, as a faulty kernel would introduce.
"""
import json
import math
import os
import random
import struct
import sys


def main():
    out = sys.argv[1]
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 65536
    fault = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    rng = random.Random(0)
    base = [rng.gauss(0.0, 1.0) for _ in range(n)]
    manifests = {"ref": [], "dev": []}
    for side in manifests:
        os.makedirs(os.path.join(out, side, "tensors"), exist_ok=True)
    for k in range(layers):
        # A different, deterministic activation per layer: a rotation of the base vector.
        ref = base[k % n:] + base[: k % n]
        level = 2.0 ** -12 * math.sqrt(1 + k / 50)
        if k >= fault:
            level += 0.05
        dev = [x * (1 + level * rng.gauss(0.0, 1.0)) for x in ref]
        for side, vals in (("ref", ref), ("dev", dev)):
            rel = f"tensors/{k:06d}.bin"
            with open(os.path.join(out, side, rel), "wb") as f:
                f.write(struct.pack(f"<{n}f", *vals))
            manifests[side].append({
                "order": k, "place": f"model.layers.{k}", "kind": "module", "op_type": "Block",
                "role": "output", "index": "0", "name": f"model.layers.{k}.output.0",
                "dtype": "float32", "shape": [n], "device": "cpu", "file": rel, "nbytes": 4 * n,
            })
    for side, entries in manifests.items():
        with open(os.path.join(out, side, "driftscope.json"), "w") as f:
            json.dump({"format": "driftscope-native", "version": 1, "level": "module",
                       "run": {"generator": "benches/gen_layers.py"}, "entries": entries}, f)


if __name__ == "__main__":
    main()
