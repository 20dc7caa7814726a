#!/usr/bin/env python3
"""Builds hostile pickles and torch.save-shaped files for tests/malicious.rs and tests/bombs.rs.

Standard library only (no torch): the payloads are made by Python's own pickle, the way an
attacker would make them. Nothing here unpickles anything except `control`, which the tests
run on purpose to prove the payloads are live.

  make_pickles.py malicious OUT_DIR MARKER BASE_PT   hostile pickles (OUT/<name>.pkl) and the
                                                     same pickles as data.pkl inside a copy of
                                                     the real torch.save zip BASE_PT (OUT/<name>.pt)
  make_pickles.py forged OUT_DIR                     well-formed torch.save zips whose tensor
                                                     metadata lies (sizes, shapes, zip headers)
"""
import builtins, collections, io, os, pickle, struct, subprocess, sys, types, zipfile


class Call:
    """Pickles as `f(*args)`: the classic __reduce__ payload."""

    def __init__(self, f, args):
        self.f, self.args = f, args

    def __reduce__(self):
        return (self.f, self.args)


def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def replace_pkl(base, payload):
    buf = io.BytesIO()
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = payload if info.filename.endswith("data.pkl") else zin.read(info)
            zout.writestr(info.filename, data)
    return buf.getvalue()


def malicious(out, marker, base):
    cmd = f"touch {marker}"
    p = {}
    for proto in (0, 2, 4, 5):
        # protocol 0/2: GLOBAL `posix system`; 4/5: STACK_GLOBAL.
        p[f"os_system_p{proto}"] = pickle.dumps(Call(os.system, (cmd,)), protocol=proto)
    p["eval_p2"] = pickle.dumps(Call(builtins.eval, (f"__import__('os').system({cmd!r})",)), protocol=2)
    p["eval_p4"] = pickle.dumps(Call(builtins.eval, (f"__import__('os').system({cmd!r})",)), protocol=4)
    p["exec_p2"] = pickle.dumps(Call(builtins.exec, (f"open({marker!r}, 'w').close()",)), protocol=2)
    p["popen_p2"] = pickle.dumps(Call(subprocess.Popen, (["touch", marker],)), protocol=2)
    p["popen_p4"] = pickle.dumps(Call(subprocess.Popen, (["touch", marker],)), protocol=4)
    # The payload hidden inside an otherwise harmless state dict.
    p["nested_p2"] = pickle.dumps(
        collections.OrderedDict([("weight", [1.0, 2.0]), ("x", Call(os.system, (cmd,)))]), protocol=2
    )
    # INST (protocol 0 `i`): module and name follow the opcode, arguments sit on the mark.
    p["inst"] = b"(" + binunicode(cmd) + b"ios\nsystem\n."
    # OBJ (`o`) on a forbidden and on a whitelisted class.
    p["obj_forbidden"] = b"(cos\nsystem\n" + binunicode(cmd) + b"o."
    p["obj_whitelisted"] = b"\x80\x02(ccollections\nOrderedDict\no."
    # NEWOBJ / NEWOBJ_EX on a whitelisted class.
    p["newobj"] = b"\x80\x02ccollections\nOrderedDict\n)\x81."
    p["newobj_ex"] = b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93)}\x92."
    # REDUCE of a whitelisted callable with arguments it never takes; REDUCE on a non-callable.
    p["reduce_ordereddict_args"] = b"\x80\x02ccollections\nOrderedDict\n" + binunicode(cmd) + b"\x85R."
    p["reduce_string"] = b"\x80\x02" + binunicode("os.system") + binunicode(cmd) + b"\x85R."
    # BUILD on a list (Python would call list.__setstate__ / setattr with attacker state).
    p["build_list"] = b"\x80\x02]}b."
    # GLOBAL names that look like torch but are not on the whitelist.
    p["torch_load_global"] = b"\x80\x02ctorch\nload\n" + binunicode("x") + b"\x85R."
    p["torch_utils_other"] = b"\x80\x02ctorch._utils\n_rebuild_from_type_v2\n)R."
    for name, data in p.items():
        open(os.path.join(out, name + ".pkl"), "wb").write(data)
        open(os.path.join(out, name + ".pt"), "wb").write(replace_pkl(base, data))
    # The control: the tests unpickle this one with Python to prove the payloads work.
    ctl = pickle.dumps(Call(os.system, (f"touch {marker}.control",)), protocol=2)
    open(os.path.join(out, "control.pkl"), "wb").write(ctl)


# ---- forged torch.save zips: a fake `torch` module lets pickle name the real globals ----

def fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    torch._utils = utils
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils

    def _rebuild_tensor_v2(*a):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    return _rebuild_tensor_v2, FloatStorage


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


def tensor_pickle(numel, shape, stride, offset=0):
    rebuild, fs = fake_torch()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", fs, obj.key, "cpu", obj.numel)
            return None

    buf = io.BytesIO()
    t = Call(rebuild, (Storage("0", numel), offset, tuple(shape), tuple(stride), False, collections.OrderedDict()))
    P(buf, protocol=2).dump(t)
    return buf.getvalue()


def torch_zip(pkl, storage):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def patch_sizes(data, name, size):
    """Rewrites the sizes a zip's central directory (and local header) claim for `name`."""
    b = bytearray(data)
    n = name.encode()
    i = b.find(b"PK\x01\x02")
    while i >= 0:
        nlen = struct.unpack_from("<H", b, i + 28)[0]
        if bytes(b[i + 46 : i + 46 + nlen]) == n:
            struct.pack_into("<II", b, i + 20, size, size)
            local = struct.unpack_from("<I", b, i + 42)[0]
            struct.pack_into("<II", b, local + 18, size, size)
        i = b.find(b"PK\x01\x02", i + 4)
    return bytes(b)


def forged(out):
    four = struct.pack("<4f", 1, 2, 3, 4)
    files = {
        "ok": torch_zip(tensor_pickle(4, [2, 2], [2, 1]), four),
        # shape product overflows usize
        "shape_overflow": torch_zip(tensor_pickle(4, [1 << 32, 1 << 32, 1 << 8], [1 << 40, 1 << 8, 1]), four),
        # storage declares far more elements than the file holds
        "storage_larger_than_file": torch_zip(tensor_pickle(1 << 40, [1 << 20, 1 << 20], [1 << 20, 1]), four),
        # a view reaching past its storage
        "view_past_storage": torch_zip(tensor_pickle(4, [4, 4], [4, 1]), four),
        # empty tensor with an absurd offset (must not index the map)
        "empty_huge_offset": torch_zip(tensor_pickle(4, [0, 3], [3, 1], offset=(1 << 60)), four),
        # huge dims with huge strides and one zero dim: (dim-1)*stride sums past 2^128
        "empty_huge_strides": torch_zip(
            tensor_pickle(4, [0] + [(1 << 63) - 1] * 5, [1] + [(1 << 63) - 1] * 5), four
        ),
    }
    files["zip_entry_claims_4gib"] = patch_sizes(files["ok"], "archive/data/0", 0xFFFFFFF0)
    files["zip_pkl_claims_4gib"] = patch_sizes(files["ok"], "archive/data.pkl", 0xFFFFFFF0)
    for name, data in files.items():
        open(os.path.join(out, name + ".pt"), "wb").write(data)


if __name__ == "__main__":
    if sys.argv[1] == "malicious":
        malicious(*sys.argv[2:5])
    elif sys.argv[1] == "forged":
        forged(sys.argv[2])
    else:
        sys.exit(__doc__)
