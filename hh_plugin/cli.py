"""The ``hh-plugin`` command: make, run, cross-check and inspect hh_plugin files.

Exit status: 0 success; 1 cross-check tolerances exceeded; 2 usage error, bad or
missing input file, or an output file that exists (use ``--force``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import numpy as np

EXIT_FAIL = 1
EXIT_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hh-plugin", description=(
        "Portable HH files (format 1.0): run a case on torch or Brian2 and cross-check."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-case", help="write a random case file (spec, state, input)")
    p.add_argument("--neurons", type=int, default=1000)
    p.add_argument("--duration", type=float, default=50.0, help="ms")
    p.add_argument("--dt", type=float, default=0.01, help="ms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--noise", type=float, default=3.0, help="uA, sd of the per-step noise")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")

    p = sub.add_parser("run", help="run a case file on a backend, write the traces")
    p.add_argument("case")
    p.add_argument("--backend", choices=("torch", "brian2"), required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="torch dtype (default: the case's)")
    p.add_argument("--target", default="numpy", choices=("numpy", "cython"),
                   help="Brian2 code generation target (default numpy)")

    p = sub.add_parser("crosscheck", help="compare two result files")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--plot", help="write a PNG overlay of the worst neurons")
    p.add_argument("--atol-V", type=float, help="mV (default: 1e-6 float64, 0.5 float32)")
    p.add_argument("--atol-gate", type=float, help="(default: 1e-8 float64, 1e-3 float32)")
    p.add_argument("--spike-steps", type=int,
                   help="allowed spike shift in steps (default: 0 float64, 1 float32)")
    p.add_argument("--worst", type=int, default=10, help="rows in the table (default 10)")

    p = sub.add_parser("inspect", help="print a summary of a file")
    p.add_argument("file")
    return parser


def _check_output(path: str, force: bool) -> None:
    import os

    if os.path.exists(path) and not force:
        raise FileExistsError(f"{path} exists; use --force to overwrite it")


def _cmd_make_case(args) -> int:
    from .export.case import make_case

    _check_output(args.output, args.force)
    case = make_case(args.neurons, args.duration, args.dt, args.seed, args.dtype,
                     noise=args.noise)
    case.save(args.output, overwrite=args.force)
    print(f"wrote {args.output}: {args.neurons} neurons, {len(case.input)} steps of "
          f"{args.dt:g} ms, {args.dtype}")
    return 0


def _cmd_run(args) -> int:
    import time

    from .export import load
    from .export.runner import run_case

    _check_output(args.output, args.force)
    case = load(args.case)
    options = {}
    if args.backend == "torch":
        options["device"] = args.device
        if args.dtype:
            import torch

            options["dtype"] = getattr(torch, args.dtype)
    else:
        options["target"] = args.target
    start = time.perf_counter()
    result = run_case(case, args.backend, progress=sys.stderr.isatty(), **options)
    elapsed = time.perf_counter() - start
    result.save(args.output, overwrite=args.force)
    spikes = int(result.traces["spikes"].sum())
    print(f"wrote {args.output}: {args.backend}, {result.n_steps} steps, {spikes} spikes, "
          f"{elapsed:.2f} s")
    return 0


def _cmd_crosscheck(args) -> int:
    from .export import load
    from .export.crosscheck import compare
    from .export.report import plot, table

    a, b = load(args.a), load(args.b)
    result = compare(a, b, atol_V=args.atol_V, atol_gate=args.atol_gate,
                     spike_steps=args.spike_steps)
    print(table(result, worst=args.worst, backends=(a.backend, b.backend)))
    if args.plot:
        plot(result, a, b, args.plot)
        print(f"plot: {args.plot}")
    return 0 if result.passed else EXIT_FAIL


def _describe(name: str, array: np.ndarray, unit: str) -> str:
    array = np.asarray(array)
    if array.ndim == 0:
        return f"  {name:<8} {float(array):.6g} {unit}"
    text = f"  {name:<8} {array.dtype}{list(array.shape)} {unit}"
    if array.size and array.dtype.kind == "f":
        text += f"  min {array.min():.6g} max {array.max():.6g}"
    return text


def _cmd_inspect(args) -> int:
    from .export import load

    r = load(args.file)
    spec = r.spec
    lines = [f"{args.file}: hh_plugin format {r.format_version}",
             f"model: {spec.model.name}, integrator exponential_euler (Jacobi), "
             f"dt = {r.dt if r.dt is None else f'{r.dt:g} ms'}, spike rule rising_edge, "
             f"reset {'none' if spec.V_reset is None else spec.spk_reset}",
             "parameters:"]
    for name, value in spec.parameters.items():
        lines.append(_describe(name, value, spec.units[name]))
    if spec.V_reset is not None:
        lines.append(_describe("V_reset", spec.V_reset, "mV"))
    if r.state is not None:
        lines.append(f"state at t = {r.time:g} ms, shape {r.shape}, {r.dtype}:")
        for name, value in r.state.items():
            lines.append(_describe(name, value, "mV" if name == "V" else "1"))
    else:
        lines.append("state: none")
    if r.input is not None:
        lines.append(f"input from t = {r.input_t_start:g} ms:")
        lines.append(_describe("I", r.input, "uA"))
    else:
        lines.append("input: none")
    if r.traces is not None:
        t = r.traces["time"]
        lines.append(f"traces: {len(t)} rows, t = {t[0]:g} .. {t[-1]:g} ms")
        for name, value in r.traces.items():
            if name == "spikes":
                lines.append(f"  spikes   uint8{list(value.shape)}  total "
                             f"{int(value.sum())}")
            elif name != "time":
                lines.append(_describe(name, value, "mV" if name == "V" else "1"))
    else:
        lines.append("traces: none")
    p = r.provenance
    versions = ", ".join(f"{k} {v}" for k, v in sorted(p.get("versions", {}).items()))
    lines.append(f"provenance: backend {p.get('backend')}, created {p.get('created')}"
                 + (f", device {p['device']}" if p.get("device") else ""))
    lines.append(f"  versions: {versions}")
    for key in ("source", "notes"):
        if p.get(key):
            lines.append(f"  {key}: {p[key]}")
    print("\n".join(lines))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``hh-plugin``; returns the exit status (see the module docstring)."""
    from .export.errors import CrosscheckError, FormatError

    args = _parser().parse_args(argv)
    command = {"make-case": _cmd_make_case, "run": _cmd_run, "crosscheck": _cmd_crosscheck,
               "inspect": _cmd_inspect}[args.command]
    try:
        return command(args)
    except (FormatError, CrosscheckError, FileExistsError, FileNotFoundError,
            PermissionError, IsADirectoryError) as exc:
        print(f"hh-plugin {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("hh-plugin: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``hh-plugin inspect f.h5 | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
