"""Command line: `python -m driftscope.harness run SCRIPT --out DIR [options] [-- SCRIPT ARGS]`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from .capture import DEFAULT_ROLES, LEVELS, ROLES, Capture, CaptureError
from .determinism import seed_everything, set_deterministic, set_tf32
from .runner import run_script

PROG = "driftscope-harness"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Capture per-layer tensor dumps of a PyTorch model for driftscope."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a script and capture its model's forward pass",
        description=(
            "Run SCRIPT as __main__ and capture the chosen step of each top-level module it calls "
            "(a step is one outermost call of that module, counted from 0). Arguments for the "
            "script go after `--`."
        ),
    )
    run.add_argument("script", help="the Python script to run")
    run.add_argument("--out", required=True, help="dump folder (with several --step: one step{N} folder each)")
    run.add_argument("--level", choices=LEVELS, default="module", help="module hooks or every torch op (default module)")
    run.add_argument("--step", type=int, action="append", help="step to capture, repeatable (default 0)")
    run.add_argument(
        "--roles", default=",".join(DEFAULT_ROLES),
        help=f"comma-separated roles from {','.join(ROLES)} (default {','.join(DEFAULT_ROLES)})",
    )
    run.add_argument("--include", action="append", default=[], help="record only places matching this glob or re:REGEX (repeatable)")
    run.add_argument("--exclude", action="append", default=[], help="skip places matching this glob or re:REGEX (repeatable)")
    run.add_argument("--max-numel", type=int, help="list larger tensors without saving them")
    run.add_argument("--no-stats", action="store_true", help="do not add min/max/mean/norm to entries")
    run.add_argument("--save-inputs", action="store_true", help="save the step's model inputs as inputs.pt")
    run.add_argument("--overwrite", action="store_true", help="replace an existing dump in --out")
    run.add_argument("--seed", type=int, help="seed Python, numpy and torch before the script starts")
    run.add_argument("--deterministic", action="store_true", help="turn on deterministic algorithms")
    run.add_argument("--no-tf32", action="store_true", help="forbid TF32 matmuls and convolutions on CUDA")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # Everything after the first `--` belongs to the script, so its options never clash with ours.
    split = argv.index("--") if "--" in argv else len(argv)
    ours, script_args = argv[:split], argv[split + 1:]
    args = build_parser().parse_args(ours)
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    steps = args.step or [0]
    try:
        session = Capture(
            args.out,
            level=args.level,
            roles=roles,
            include=args.include,
            exclude=args.exclude,
            step=steps[0] if len(steps) == 1 else steps,
            max_numel=args.max_numel,
            stats=not args.no_stats,
            save_inputs=args.save_inputs,
            overwrite=args.overwrite,
        )
    except (ValueError, FileExistsError) as err:
        return _fail(err)
    if args.seed is not None:
        seed_everything(args.seed)
    if args.deterministic:
        set_deterministic(True)
    if args.no_tf32:
        set_tf32(False)
    # Errors of the script itself propagate with their traceback, as without the harness.
    try:
        run_script(args.script, script_args, session)
    except (FileNotFoundError, CaptureError) as err:
        return _fail(err)
    for manifest in session.manifests:
        print(f"{PROG}: wrote {manifest}", file=sys.stderr)
    return 0


def _fail(err: Exception) -> int:
    print(f"{PROG}: error: {err}", file=sys.stderr)
    return 2
