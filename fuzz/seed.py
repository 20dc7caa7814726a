#!/usr/bin/env python3
"""Adds seeds to fuzz/corpus/<target>/ from reference_dumps/ (stdlib only; the minimized corpora are kept in the repository, docs/robustness.md).

Real files where the repository has them (.pt, .npy, .safetensors, dump.json); derived ones
where it has none (.npz built from real .npy files, stored and deflated; a native manifest;
the data.pkl pickles pulled out of real .pt zips). Large seeds are cut down: libFuzzer mutates
small inputs far faster.
"""
import json, pathlib, shutil, struct, zipfile, io, sys

root = pathlib.Path(__file__).resolve().parent.parent
ref = root / "reference_dumps"
corpus = root / "fuzz" / "corpus"
LIMIT = 64 << 10


def out(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def smallest(pattern, n, dedup=True):
    files = sorted(ref.rglob(pattern), key=lambda p: (p.stat().st_size, str(p)))
    seen, picked = set(), []
    for p in files:
        if dedup and p.name in seen:
            continue
        seen.add(p.name)
        picked.append(p)
        if len(picked) == n:
            break
    return picked


# .pt: a few small real tensors (fp32, bf16, fp16, int, bool) and their pickles alone.
for p in smallest("*.pt", 12):
    b = p.read_bytes()
    if len(b) > LIMIT:
        continue
    out("pt", p.parent.parent.parent.parent.name + "_" + p.name, b)
    with zipfile.ZipFile(io.BytesIO(b)) as z:
        for n in z.namelist():
            if n.endswith("data.pkl"):
                out("pickle", p.name + ".pkl", z.read(n))

# .npy and .npz built from them.
npys = smallest("*.npy", 8)
for p in npys:
    out("npy", p.name, p.read_bytes())
for comp, tag in [(zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflated")]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", comp) as z:
        for p in npys[:3]:
            z.writestr(p.name, p.read_bytes())
    out("npz", f"{tag}.npz", buf.getvalue())

# .safetensors: real files cut to their first few tensors (header rewritten), and one whole.
for p in smallest("*.safetensors", 4, dedup=False):
    b = p.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8 : 8 + n])
    meta = hdr.pop("__metadata__", None)
    items = sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0])[:4]
    body, new = b"", {}
    for k, v in items:
        s, e = v["data_offsets"]
        new[k] = dict(v, data_offsets=[len(body), len(body) + e - s])
        body += b[8 + n + s : 8 + n + e]
    if meta is not None:
        new["__metadata__"] = {"order": json.dumps([k for k, _ in items])}
    h = json.dumps(new).encode()
    out("safetensors", p.parent.parent.name + "_" + p.parent.name + ".safetensors", struct.pack("<Q", len(h)) + h + body)

# dump.json: real ones cut to their first entries (statistics and tensor tasks).
for p in smallest("dump.json", 3, dedup=False):
    d = json.loads(p.read_text())
    d["data"] = dict(list(d["data"].items())[:6])
    out("msprobe", p.parent.parent.parent.name + "_" + str(len(d["data"])) + "_dump.json", json.dumps(d, indent=1).encode())

# native manifest (docs/formats.md), with NaN stats as Python writes them.
native = {
    "format": "driftscope-native",
    "version": 1,
    "level": "module",
    "run": {"device": "cpu"},
    "entries": [
        {"order": 0, "place": "model.embed", "op_type": "Embedding", "role": "output",
         "index": "0", "name": "model.embed.output.0", "dtype": "float32", "shape": [2, 3],
         "file": "tensors/0.bin", "nbytes": 24,
         "stats": {"min": 0.0, "max": 1.0, "mean": 0.5, "norm": 1.2}},
        {"order": 1, "place": "model.norm", "role": "output", "index": "0",
         "name": "model.norm.output.0", "dtype": "bfloat16", "shape": [4],
         "skipped": "too large"},
    ],
}
out("native", "driftscope.json", json.dumps(native, indent=1).encode())


# CANN dump files: the repository holds none, so two are built by hand from the vendored
# src/dump/dump_data.proto (field numbers below): an ND float32 output and a float16 NC1HWC0
# input, data in the segment after the header.
def varint(n):
    b = bytearray()
    while True:
        b.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(b)


def field(num, wire, payload):
    key = varint(num << 3 | wire)
    return key + (varint(payload) if wire == 0 else varint(len(payload)) + payload)


def shape(dims):
    return field(1, 2, b"".join(varint(d) for d in dims))


def tensor(dtype, fmt, dims, logical, size, size_field=6, orig_field=7):
    return (field(1, 0, dtype) + field(2, 0, fmt) + field(3, 2, shape(dims))
            + field(size_field, 0, size) + field(orig_field, 2, shape(logical)))


out_t = tensor(1, 2, [2, 3], [2, 3], 24)
in_t = tensor(2, 3, [1, 1, 1, 1, 16], [1, 16, 1, 1], 32, size_field=5, orig_field=6)
header = (field(1, 2, b"2.0") + field(2, 0, 1700000000000000) + field(3, 2, out_t)
          + field(4, 2, in_t) + field(6, 2, b"conv1"))
segment = struct.pack("<6f", 0.5, -1.0, 2.0, 0.0, 3.5, -0.25) + struct.pack("<16e", *range(16))
out("cann", "Conv2D.conv1.3.1700000000000000", struct.pack("<Q", len(header)) + header + segment)
out("cann", "header_only", struct.pack("<Q", len(header)) + header)

print("seeded", {d.name: len(list(d.iterdir())) for d in sorted(corpus.iterdir())})
