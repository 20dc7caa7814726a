"""Generates a multi-rank msprobe statistics-mode run for benches/shard_merge.sh (stdlib only).

usage: gen_ranks.py OUT_DIR RANKS ENTRIES [--bad-rank R]

Writes OUT/ref/step0/rankN/dump.json and OUT/dev/step0/rankN/dump.json for N < RANKS: ENTRIES
tensor records (ENTRIES/2 API calls with one input and one output each) with Max/Min/Mean/Norm
and no tensor files, as msprobe's statistics task writes them. The candidate's statistics are
the reference's times 1 + ~1e-4; on rank R (default RANKS/3) every output from the middle call on
is off by 5%. One file per side (and one for rank R) is hard-linked into every rank folder.
"""
import argparse, json, math, os, random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("ranks", type=int)
p.add_argument("entries", type=int)
p.add_argument("--bad-rank", type=int)
a = p.parse_args()
bad = a.bad_rank if a.bad_rank is not None else a.ranks // 3
rng = random.Random(0)
calls = a.entries // 2


def rec(s, scale):
    mx, mn, mean, norm = s
    return {"type": "torch.Tensor", "dtype": "torch.float16", "shape": [1, 64, 256],
            "Max": mx * scale, "Min": mn * scale, "Mean": mean * scale, "Norm": norm * scale,
            "requires_grad": False}


base = []
for i in range(calls):
    x = [rng.uniform(0.5, 2.0) for _ in range(2)]
    base.append([(x[k], -x[k] * 0.9, x[k] * 0.01, x[k] * 40.0) for k in range(2)])


def dump(noise, fault_from):
    data = {}
    for i in range(calls):
        n = [1.0 + noise * rng.uniform(-1, 1) for _ in range(2)]
        faulty = fault_from is not None and i >= fault_from
        # The faulty call's own inputs are clean; later calls inherit the error.
        fin = 1.05 if faulty and i > fault_from else 1.0
        fout = 1.05 if faulty else 1.0
        data[f"Functional.gelu.{i}.forward"] = {
            "input_args": [rec(base[i][0], n[0] * fin)],
            "input_kwargs": {},
            "output": [rec(base[i][1], n[1] * fout)],
        }
    return {"task": "statistics", "level": "L1", "framework": "pytorch", "dump_data_dir": None,
            "data": data}


os.makedirs(a.out, exist_ok=True)
files = {"ref": dump(0.0, None), "dev": dump(1e-4, None), "bad": dump(1e-4, calls // 2)}
for k, v in files.items():
    with open(os.path.join(a.out, f"{k}.json"), "w") as fh:
        json.dump(v, fh)
for r in range(a.ranks):
    for side in ("ref", "dev"):
        d = os.path.join(a.out, side, "step0", f"rank{r}")
        os.makedirs(d, exist_ok=True)
        src = "bad" if side == "dev" and r == bad else side
        os.link(os.path.join(a.out, f"{src}.json"), os.path.join(d, "dump.json"))
