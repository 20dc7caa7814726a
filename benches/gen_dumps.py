"""Generates benchmark dumps for benches/e2e.sh (needs torch; run with the harness venv).

usage: gen_dumps.py OUT_DIR [--mib-per-side 1024] [--tensors 4] [--small 100000]
(--mib-per-side 0: only the small op-level dump)

Writes, for fp32 and bf16, a reference and a candidate side in two layouts:
  OUT/msprobe_{fp32,bf16}_{ref,dev}/step0/rank0/{dump.json, dump_tensor_data/*.pt}
  OUT/native_{fp32,bf16}_{ref,dev}/{driftscope.json, tensors/*.bin}
and OUT/small_{ref,dev}: an msprobe op-level dump of SMALL fp32 tensors of 1024 elements (4 KiB).
The candidate is the reference plus relative noise of ~1e-3 (so every metric has work to do).
"""
import argparse, json, os
import torch

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--mib-per-side", type=int, default=1024)
p.add_argument("--tensors", type=int, default=4)
p.add_argument("--small", type=int, default=100000)
a = p.parse_args()
torch.manual_seed(0)


def stats(t):
    f = t.float()
    return dict(Max=f.max().item(), Min=f.min().item(), Mean=f.mean().item(), Norm=f.norm().item())


def write_side(root, tensors, dtype_name, save_pt, native):
    """tensors: list of (place, tensor)."""
    if native:
        os.makedirs(os.path.join(root, "tensors"), exist_ok=True)
        entries = []
        for i, (place, t) in enumerate(tensors):
            f = f"tensors/{i:06d}.bin"
            t.contiguous().view(torch.uint8 if t.dtype != torch.bfloat16 else torch.int16).numpy().tofile(os.path.join(root, f))
            entries.append(dict(order=i, place=place, kind="module", op_type="Linear", role="output",
                                index="0", name=f"{place}.output.0", dtype=dtype_name,
                                shape=list(t.shape), device="cpu", file=f,
                                nbytes=t.numel() * t.element_size()))
        with open(os.path.join(root, "driftscope.json"), "w") as fh:
            json.dump(dict(format="driftscope-native", version=1, level="module", run={}, entries=entries), fh)
        return
    d = os.path.join(root, "step0", "rank0")
    os.makedirs(os.path.join(d, "dump_tensor_data"), exist_ok=True)
    data = {}
    for place, t in tensors:
        name = f"{place}.output.0.pt"
        rec = dict(type="torch.Tensor", dtype=f"torch.{dtype_name}", shape=list(t.shape),
                   requires_grad=False, data_name=name)
        if t.numel() < 1 << 20:
            rec.update(stats(t))
        else:
            rec.update(Max=None, Min=None, Mean=None, Norm=None)
        data[place] = {"input_args": [], "input_kwargs": {}, "output": [rec]}
        if save_pt:
            torch.save(t.clone().contiguous(), os.path.join(d, "dump_tensor_data", name))
    with open(os.path.join(d, "dump.json"), "w") as fh:
        json.dump(dict(task="tensor", level="L1", framework="pytorch", dump_data_dir=d, data=data), fh)
    for f in ("stack.json", "construct.json"):
        with open(os.path.join(d, f), "w") as fh:
            json.dump({}, fh)


def pair(numel, dtype):
    r = torch.randn(numel, dtype=torch.float32)
    d = r * (1 + 1e-3 * torch.randn(numel))
    return r.to(dtype), d.to(dtype)


for dtype_name, dtype, size in (("float32", torch.float32, 4), ("bfloat16", torch.bfloat16, 2)) if a.mib_per_side else ():
    numel = a.mib_per_side * (1 << 20) // size // a.tensors
    refs, devs = [], []
    for k in range(a.tensors):
        r, d = pair(numel, dtype)
        place = f"Functional.linear.{k}.forward"
        refs.append((place, r.reshape(-1, 1024)))
        devs.append((place, d.reshape(-1, 1024)))
    tag = "fp32" if size == 4 else "bf16"
    for layout in ("msprobe", "native"):
        write_side(os.path.join(a.out, f"{layout}_{tag}_ref"), refs, dtype_name, True, layout == "native")
        write_side(os.path.join(a.out, f"{layout}_{tag}_dev"), devs, dtype_name, True, layout == "native")
    del refs, devs

if a.small:
    r, d = pair(a.small * 1024, torch.float32)
    refs = [(f"Torch.add.{i}.forward", r[i * 1024:(i + 1) * 1024].clone()) for i in range(a.small)]
    devs = [(f"Torch.add.{i}.forward", d[i * 1024:(i + 1) * 1024].clone()) for i in range(a.small)]
    write_side(os.path.join(a.out, "small_ref"), refs, "float32", True, False)
    write_side(os.path.join(a.out, "small_dev"), devs, "float32", True, False)
