"""Generates one msprobe statistics-mode dump pair of N tensor entries per side (stdlib only).

usage: gen_stats.py OUT_DIR N [--cut K] [--fault-at E]

Writes OUT/ref/step0/rank0/dump.json and OUT/dev/step0/rank0/dump.json: msprobe's statistics
task at level L1 (API calls), PyTorch, as mindstudio-probe writes it (`json.dump(indent=1)`,
records `{type, dtype, shape, Max, Min, Mean, Norm, requires_grad}` and no tensor files). The
calls are a tensor-parallel transformer training step: per layer and micro-batch, forward
`Functional.rms_norm`, `Functional.linear`, `Torch.matmul`, `Functional.softmax`,
`Distributed.all_reduce`, `Tensor.__add__`, `Functional.silu`, `Tensor.__mul__` (with their
non-tensor arguments: ints, a reduce op, a process group), then the backward calls in reverse
order. Every side holds exactly N tensor records (the last call is cut short if needed).

The candidate's statistics are the reference's times 1 + ~1e-3 (bf16 rounding); from entry E
(default 60% of the smaller of N and K) on, the first `Functional.silu` output is off by 5% and
every later tensor inherits it. `--cut K` also writes OUT/cut/{ref,dev}: the first K entries of
the same pair (same records, same fault), for tools too slow for N.
"""
import argparse, json, os, random

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("n", type=int)
p.add_argument("--cut", type=int)
p.add_argument("--fault-at", type=int)
a = p.parse_args()
fault_at = a.fault_at if a.fault_at is not None else int(0.6 * min(a.n, a.cut or a.n))

HIDDEN, FFN, HEADS, SEQ, TP = 8192, 28672, 64, 4096, 8
BF16 = "torch.bfloat16"


def tensor(rng, shape, grad, scale=1.0):
    mx = rng.uniform(0.5, 8.0) * scale
    mn = -rng.uniform(0.5, 8.0) * scale
    return {"type": "torch.Tensor", "dtype": BF16, "shape": shape, "Max": mx, "Min": mn,
            "Mean": rng.uniform(-0.01, 0.01) * scale, "Norm": rng.uniform(50.0, 900.0) * scale,
            "requires_grad": grad}


def non_tensor(kind):
    if kind == "dim":
        return {"type": "int", "value": -1}
    if kind == "op":
        return {"type": "torch.distributed.ReduceOp", "value": "RedOpType.SUM"}
    return {"type": "torch.distributed.ProcessGroup", "group_ranks": list(range(TP)),
            "group_id": "tp-0"}


act = [1, SEQ, HIDDEN]
# Forward calls of one layer: (api, input shapes, extra non-tensor args, output shape).
LAYER = [
    ("Functional.rms_norm", [act, [HIDDEN]], [], act),
    ("Functional.linear", [act, [3 * HIDDEN // TP, HIDDEN]], [], [1, SEQ, 3 * HIDDEN // TP]),
    ("Torch.matmul", [[1, HEADS // TP, SEQ, 128], [1, HEADS // TP, 128, SEQ]], [],
     [1, HEADS // TP, SEQ, SEQ]),
    ("Functional.softmax", [[1, HEADS // TP, SEQ, SEQ]], ["dim"], [1, HEADS // TP, SEQ, SEQ]),
    ("Torch.matmul", [[1, HEADS // TP, SEQ, SEQ], [1, HEADS // TP, SEQ, 128]], [],
     [1, HEADS // TP, SEQ, 128]),
    ("Functional.linear", [[1, SEQ, HIDDEN // TP], [HIDDEN, HIDDEN // TP]], [], act),
    ("Distributed.all_reduce", [act], ["op", "group"], act),
    ("Tensor.__add__", [act, act], [], act),
    ("Functional.rms_norm", [act, [HIDDEN]], [], act),
    ("Functional.linear", [act, [2 * FFN // TP, HIDDEN]], [], [1, SEQ, 2 * FFN // TP]),
    ("Functional.silu", [[1, SEQ, FFN // TP]], [], [1, SEQ, FFN // TP]),
    ("Tensor.__mul__", [[1, SEQ, FFN // TP], [1, SEQ, FFN // TP]], [], [1, SEQ, FFN // TP]),
    ("Functional.linear", [[1, SEQ, FFN // TP], [HIDDEN, FFN // TP]], [], act),
    ("Distributed.all_reduce", [act], ["op", "group"], act),
    ("Tensor.__add__", [act, act], [], act),
]
BACKWARD = {"Functional.rms_norm", "Functional.linear", "Torch.matmul", "Functional.softmax",
            "Functional.silu", "Tensor.__mul__", "Tensor.__add__"}


def calls():
    """(name, record builder) of every call of the step, forever (the caller stops)."""
    counters = {}
    rng = random.Random(0)

    def name(api, direction):
        key = (api, direction)
        n = counters.get(key, 0)
        counters[key] = n + 1
        return f"{api}.{n}.{direction}"

    while True:  # micro-batches of 80 layers
        for _layer in range(80):
            back = []
            for api, ins, extra, out in LAYER:
                inputs = [tensor(rng, s, i > 0 and api == "Functional.linear") for i, s in
                          enumerate(ins)] + [non_tensor(k) for k in extra]
                rec = {"input_args": inputs, "input_kwargs": {},
                       "output": [tensor(rng, out, True)]}
                yield name(api, "forward"), rec
                if api in BACKWARD:
                    back.append((api, ins, out))
            for api, ins, out in reversed(back):
                rec = {"input": [tensor(rng, out, False, 1e-3)],
                       "output": [tensor(rng, s, False, 1e-3) for s in ins]}
                yield name(api, "backward"), rec


def tensors_of(rec):
    return [t for v in rec.values() for t in (v if isinstance(v, list) else v.values())
            if isinstance(t, dict) and t.get("type") == "torch.Tensor"]


class Side:
    def __init__(self, path, limit):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "w")
        self.limit = limit
        self.count = 0
        self.first = True
        self.fh.write('{\n "task": "statistics",\n "level": "L1",\n "framework": "pytorch",\n'
                      ' "dump_data_dir": null,\n "data": {')

    def add(self, name, rec):
        """Writes the record, cut to the entries left; False once the side is full."""
        if self.count >= self.limit:
            return False
        left = self.limit - self.count
        ts = tensors_of(rec)
        if len(ts) > left:
            drop = {id(t) for t in ts[left:]}
            rec = {k: ([t for t in v if id(t) not in drop] if isinstance(v, list) else v)
                   for k, v in rec.items()}
            ts = ts[:left]
        self.count += len(ts)
        body = json.dumps({name: rec}, indent=1)[1:-2]  # the item, without the braces
        body = body.replace("\n", "\n ")
        self.fh.write(("" if self.first else ",") + body)
        self.first = False
        return True

    def close(self):
        self.fh.write("\n }\n}")
        self.fh.close()


def scaled(rec, f):
    """A copy of rec with every tensor's statistics multiplied by f(i) (i: tensor number)."""
    out = json.loads(json.dumps(rec))
    for i, t in enumerate(tensors_of(out)):
        k = f(i)
        for s in ("Max", "Min", "Mean", "Norm"):
            t[s] *= k
    return out


sides = [(Side(os.path.join(a.out, s, "step0", "rank0", "dump.json"), a.n), s == "dev")
         for s in ("ref", "dev")]
if a.cut:
    sides += [(Side(os.path.join(a.out, "cut", s, "step0", "rank0", "dump.json"), a.cut),
               s == "dev") for s in ("ref", "dev")]
noise = random.Random(1)
entry = 0
faulty = False  # the candidate carries the fault from here on
for name, rec in calls():
    ts = len(tensors_of(rec))
    n_in = len(tensors_of({"in": rec.get("input_args", rec.get("input", []))}))
    fault_here = (not faulty and entry >= fault_at and name.startswith("Functional.silu.")
                  and name.endswith(".forward"))
    if fault_here:
        f = lambda i: (1.0 + 1e-3 * noise.uniform(-1, 1)) * (1.05 if i >= n_in else 1.0)
        faulty = True
    elif faulty:
        f = lambda i: (1.0 + 1e-3 * noise.uniform(-1, 1)) * 1.05
    else:
        f = lambda i: 1.0 + 1e-3 * noise.uniform(-1, 1)
    dev = scaled(rec, f)
    more = False
    for side, is_dev in sides:
        more |= side.add(name, dev if is_dev else rec)
    entry += ts
    if not more:
        break
for side, _ in sides:
    side.close()
print(f"{a.n} entries per side in {a.out}" + (f", cut of {a.cut} in {a.out}/cut" if a.cut else ""))
