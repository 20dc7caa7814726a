#!/usr/bin/env python3
"""Writes two msprobe statistics dumps (reference and device) of a generated model with 100,000
tensor entries (50,000 module calls with one input and one output each), with construct.json
parent links: blocks.{b} (100) > layers.{l} (20) > 25 leaf modules. The device side differs by
relative 1e-5 in its statistics up to one leaf in the middle, whose output is 5% off, as is
every tensor after it (a fault the tree must lead to). Used by tests/browser/run.sh to check the report's module tree stays
usable at this size. Python stdlib only; deterministic."""

import json
import random
import sys
from pathlib import Path

BLOCKS, LAYERS = 100, 20
LEAVES = [(f"m{k}", ["Linear", "LayerNorm", "GELU", "Dropout", "Conv1d"][k % 5]) for k in range(25)]
FAULT = (BLOCKS // 2, 7, 3)  # block, layer, leaf


def stats(rng, shape):
    mean = rng.uniform(-0.1, 0.1)
    return {"Max": mean + rng.uniform(1, 3), "Min": mean - rng.uniform(1, 3), "Mean": mean,
            "Norm": rng.uniform(5, 50)}


def tensor(s, shape):
    d = {"type": "torch.Tensor", "dtype": "torch.float32", "shape": shape, "requires_grad": False}
    d.update(s)
    return d


def write(root, data, construct):
    d = Path(root) / "step0" / "rank0"
    d.mkdir(parents=True, exist_ok=True)
    (d / "dump.json").write_text(json.dumps(
        {"task": "statistics", "level": "L0", "framework": "pytorch", "dump_data_dir": None, "data": data}))
    (d / "construct.json").write_text(json.dumps(construct))
    (d / "stack.json").write_text("{}")


def main(out):
    rng = random.Random(0)
    ref, dev, construct = {}, {}, {}
    faulty = False
    for b in range(BLOCKS):
        block = f"Module.blocks.{b}.Block.forward.0"
        construct[block] = None
        for l in range(LAYERS):
            layer = f"Module.blocks.{b}.layers.{l}.Layer.forward.0"
            construct[layer] = block
            for k, (leaf, cls) in enumerate(LEAVES):
                name = f"Module.blocks.{b}.layers.{l}.{leaf}.{cls}.forward.0"
                construct[name] = layer
                shape = [4, 64]
                si, so = stats(rng, shape), stats(rng, shape)
                ref[name] = {"input_args": [tensor(si, shape)], "input_kwargs": {}, "output": [tensor(so, shape)]}
                faulty = faulty or (b, l, k) == FAULT

                def moved(s, out_side):
                    # From the fault on, outputs are 5% off, and so are later inputs (inherited).
                    at_fault = (b, l, k) == FAULT
                    f = 1.05 if faulty and (out_side or not at_fault) else 1 + 1e-5
                    return {k2: v * f for k2, v in s.items()}

                dev[name] = {"input_args": [tensor(moved(si, False), shape)], "input_kwargs": {},
                             "output": [tensor(moved(so, True), shape)]}
    write(Path(out) / "ref", ref, construct)
    write(Path(out) / "dev", dev, construct)
    print(f"{2 * len(ref)} entries per dump in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
