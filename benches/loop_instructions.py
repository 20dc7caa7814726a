#!/usr/bin/env python3
"""Instructions per iteration of the metric kernel's vector loops, counted in the release
binary's disassembly (valgrind has no AVX-512, so callgrind cannot count that path).

usage: python3 benches/loop_instructions.py [target/release/driftscope]

For each variant it finds the side-statistics loop (the one with the f32 min/max) and the
error loops (the ones with the division: with histograms, which compute the joint slot with
`vpmaddwd`, for one and for four tables, and without) and prints their instructions per
iteration and per element pair (8 elements per AVX2 iteration, 16 per AVX-512 one). A loop is
the range from a backward jump's target to the jump (for the loops with histograms, one that
holds the increments).
"""
import re
import subprocess
import sys
from collections import Counter

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/driftscope"
syms = [l for l in subprocess.run(["nm", "-C", BIN], capture_output=True, text=True,
                                  check=True).stdout.splitlines()
        if re.match(r"^[0-9a-f]+ [tT] ", l)]
starts = sorted(int(l.split()[0], 16) for l in syms)


def functions(pattern):
    """(name, instructions) of every function whose name matches `pattern`."""
    for l in syms:
        addr, _, name = l.split(" ", 2)
        if re.search(pattern, name):
            a = int(addr, 16)
            end = min(x for x in starts if x > a)
            text = subprocess.run(["objdump", "-d", "--no-show-raw-insn",
                                   f"--start-address={a}", f"--stop-address={end}", BIN],
                                  capture_output=True, text=True, check=True).stdout
            ins = [(int(m.group(1), 16), m.group(2)) for m in
                   (re.match(r"^\s+([0-9a-f]+):\s+(\S.*)$", x) for x in text.splitlines()) if m]
            yield name, ins


def loop_with(ins, must):
    """The instructions of the smallest loop holding an instruction that matches `must`."""
    best = None
    for addr, text in ins:
        m = re.match(r"^j\w+\s+([0-9a-f]+)", text)
        if m and int(m.group(1), 16) < addr:
            body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr]
            # A loop that computes joint slots (`vpmaddwd`) must hold their increments too: the
            # compiler may rotate the loop so that a shorter backward jump skips them.
            whole = not any(t.startswith("vpmaddwd") for t in body) or \
                any(t.startswith("inc") for t in body)
            if any(re.search(must, t) for t in body) and whole and \
                    (best is None or len(body) < len(best)):
                best = body
    return best


for isa, reg, width in [("avx2", "ymm", 8), ("avx512", "zmm", 16)]:
    for what, fn, must in [("sides", rf"fast::run_{isa}$", rf"vminps.*{reg}"),
                           ("errors", rf"fast::{isa}_errors$", rf"vdivpd.*{reg}")]:
        seen = set()
        for name, ins in functions(fn):
            body = loop_with(ins, must)
            if body:
                ops = Counter(t.split()[0] for t in body)
                label = what
                if what == "errors":
                    label = "errors+hist" if ops["vpmaddwd"] else "errors-nohist"
                if (label, len(body)) in seen:
                    continue
                seen.add((label, len(body)))
                print(f"{isa:7} {label:13} {len(body):4} instructions / {width} elements = "
                      f"{len(body) / width:5.2f} per element pair   {dict(ops.most_common(6))}")
                if what == "sides":
                    break
