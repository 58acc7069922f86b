"""The ``hh-plugin`` command: make, run, cross-check and inspect hh_plugin files.

Exit status (scripts can rely on it):

- 0: success (``crosscheck``: the runs agree within the tolerances);
- 1: ``crosscheck`` only: some tolerance is exceeded;
- 2: usage or input error: bad arguments, an unreadable, unsafe or invalid input file, an
  output that exists (use ``--force``) or cannot be written, a case the model cannot run;
- 3: internal error (a bug: please report it with the message);
- 130: interrupted (Ctrl-C).

Input files are read in a child process with a time and memory limit
(:func:`hh_plugin.export.load` with ``isolate=True``); outputs are checked, and reserved,
before any run starts, and written atomically.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

_EPILOG = ("exit status: 0 success (crosscheck: agreement), 1 crosscheck tolerances exceeded, "
           "2 usage or input error, 3 internal error, 130 interrupted. Limits when reading "
           "a file: HH_PLUGIN_MAX_READ_BYTES (declared data, default 1 GiB), "
           "HH_PLUGIN_READ_TIMEOUT (seconds, default 120).")


class UsageError(Exception):
    """A command-line mistake found after parsing (exit status 2)."""


# ------------------------------------------------------------------ argument types
def _number(text: str, kind):
    import math

    try:
        value = kind(text)
    except ValueError:
        raise _argparse().ArgumentTypeError(f"{text!r} is not a valid "
                                            f"{'integer' if kind is int else 'number'}")
    if kind is float and not math.isfinite(value):
        raise _argparse().ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise _argparse().ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _nonnegative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise _argparse().ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise _argparse().ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _nonnegative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise _argparse().ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _argparse():
    import argparse

    return argparse


class _ModelMaxDt:
    """The default model's largest time step, looked up only when a help text shows it
    (so that ``hh-plugin --help`` and ``--version`` import neither sympy nor numpy)."""

    def __str__(self) -> str:
        from .model import HODGKIN_HUXLEY

        return f"{HODGKIN_HUXLEY.max_dt:g}"


def _formats() -> str:
    """The file formats this version writes and reads, from the format modules."""
    from .formats import (NETWORK_BASE_VERSION, NETWORK_FORMAT_VERSION,
                          POPULATION_FORMAT_VERSION)

    return (f"file formats: {POPULATION_FORMAT_VERSION} population files, "
            f"{NETWORK_BASE_VERSION}-{NETWORK_FORMAT_VERSION} network files")


def _version_action():
    argparse = _argparse()

    class VersionAction(argparse.Action):
        """``--version``: the package and the file formats it reads and writes."""

        def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                     help="print the version and the file formats, then exit"):
            super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

        def __call__(self, parser, namespace, values, option_string=None):
            from . import __version__

            print(f"hh-plugin {__version__} ({_formats()})")
            parser.exit()

    return VersionAction


def _parser():
    argparse = _argparse()

    parser = argparse.ArgumentParser(prog="hh-plugin", epilog=_EPILOG, description=(
        "Portable HH files: population files (format 1.0: a case or a run of one "
        "population) and network files (formats 1.1 and 1.2). Make a test case, run a case or a "
        "network on torch or Brian2, cross-check two runs, inspect a file."))
    parser.add_argument("--version", action=_version_action())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("make-case", epilog=_EPILOG,
                       help="write a random case file (spec, initial state, input current)",
                       description=(
                           "Write a runnable case of the reference HH model: per-neuron "
                           "parameters drawn with the seed (gNa, gK, gL each uniform within "
                           "+-10% of the default), initial V uniform in [-70, -60] mV with "
                           "gates at steady state, and an input current I[k, j] = mu_j + "
                           "noise * xi[k, j] (mu_j uniform in [0, 20] uA, xi standard "
                           "normal)."))
    p.add_argument("--neurons", type=_positive_int, default=1000,
                   help="number of neurons (default 1000)")
    p.add_argument("--duration", type=_positive_float, default=50.0,
                   help="simulated time in ms (default 50)")
    dt = p.add_argument("--dt", type=_positive_float, default=0.01,
                        help="time step in ms, at most the model's max_dt of %(max_dt)s ms "
                             "(default 0.01)")
    dt.max_dt = _ModelMaxDt()  # filled in by argparse when the help is shown
    p.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="seed of every random draw: parameters, initial state, input "
                        "(default 0; the same seed gives the same case)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="precision of the state and input arrays (default float64)")
    p.add_argument("--noise", type=_nonnegative_float, default=3.0,
                   help="standard deviation of the per-step input noise in uA (default 3)")
    p.add_argument("--homogeneous", action="store_true",
                   help="give every neuron the default parameters (only the initial state "
                        "and the input differ between neurons)")
    p.add_argument("-o", "--output", required=True, help="the case file to write (.h5)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")

    p = sub.add_parser("run", epilog=_EPILOG,
                       help="run a case or a network file on a backend and write the result",
                       description="Run a case (from make-case or any format 1.0 file with "
                                   "a state, an input and dt) and write the traces of every "
                                   "step and the final state, or run a network file "
                                   "(formats 1.1, 1.2) and write its spikes and recorded traces.")
    p.add_argument("case", help="the case or network file to run (read in an isolated child "
                                "process)")
    p.add_argument("--backend", choices=("torch", "brian2", "neuron"), required=True,
                   help="simulator: torch (hh_plugin.torch.HH), brian2 (a NeuronGroup) or "
                        "neuron (network files; also under mpirun, rank 0 writes the "
                        "output)")
    p.add_argument("-o", "--output", required=True, help="the result file to write (.h5)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--device", help="torch only: device such as cpu or cuda:0 (default cpu)")
    p.add_argument("--dtype", choices=("float32", "float64"),
                   help="torch only: computation precision (default: the case's)")
    p.add_argument("--steps", type=_positive_int,
                   help="network files only: steps to run (default: the length of the "
                        "network's current inputs)")
    p.add_argument("--target", choices=("numpy", "cython", "cpp_standalone"),
                   help="brian2 only: code generation target (default numpy)")
    p.add_argument("--record", action="append", metavar="NAMES",
                   help="state variables to trace, comma-separated or repeated, e.g. "
                        "--record V (default: all; a case's must include V; the traces of "
                        "V only take a quarter of the memory and file)")
    p.add_argument("--integration", choices=("cvode", "fixed"),
                   help="neuron only: CVODE (default) or NEURON's fixed step of the "
                        "network's dt (second order)")
    p.add_argument("--atol", type=_positive_float,
                   help="neuron only: CVODE's absolute tolerance (default 1e-6)")
    p.add_argument("--threads", type=_positive_int,
                   help="neuron only: threads per process (default 1)")

    p = sub.add_parser("crosscheck", epilog=_EPILOG, help="compare two result files",
                       description="Compare two results of the same case neuron by neuron "
                                   "(format 1.0), or of the same network population by "
                                   "population (formats 1.1, 1.2); exit status 0 if they agree "
                                   "within the tolerances, 1 if not.")
    p.add_argument("a", help="first result file (reference, e.g. from --backend torch)")
    p.add_argument("b", help="second result file (e.g. from --backend brian2)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also write a PNG: V of the worst neurons overlaid (cases), or the "
                        "two runs' rasters side by side (networks)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    p.add_argument("--atol-V", type=_nonnegative_float,
                   help="tolerance on V in mV (default: 1e-6 float64, 0.5 float32)")
    p.add_argument("--atol-gate", type=_nonnegative_float,
                   help="tolerance on m, h, n (default: 1e-8 float64, 1e-3 float32)")
    p.add_argument("--spike-steps", type=_nonnegative_int,
                   help="allowed spike shift in steps (default: 0 float64, 1 float32)")
    p.add_argument("--spike-atol", type=_nonnegative_float, metavar="MS",
                   help="also compare the spikes' times inside their steps (linear "
                        "interpolation of the threshold crossing), within MS ms")
    p.add_argument("--worst", type=_nonnegative_int, default=10,
                   help="number of neurons listed in the table (default 10)")

    p = sub.add_parser("inspect", epilog=_EPILOG, help="print a summary of a file",
                       description="Print the model, parameters, state, input, traces and "
                                   "provenance of a file.")
    p.add_argument("file", help="the file to describe (read in an isolated child process)")
    return parser


# ------------------------------------------------------------------ outputs
class _Output:
    """An output path checked and reserved before the run: the hidden lock file of
    :func:`~hh_plugin.export.container.atomic.reserve` (so a second command with the same ``-o``
    fails at once, not after its run), released when the command ends. Nothing is
    created at the path until the result replaces it atomically, so a command killed
    with ``kill -9`` leaves no empty file there (its free lock is taken over by the
    next command). A path that exists and is not a regular file (``/dev/null``, a pipe)
    is refused, with ``--force`` too."""

    def __init__(self, path: str, force: bool, inputs=(), suffix=None, option="-o"):
        import os
        from pathlib import Path

        from .export.container.atomic import Reserved, not_regular, reserve

        self.path = Path(path)
        self.placeholder = None  # the commands clear it once written; nothing to remove
        self._lock = None
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            longest = os.pathconf(directory, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            longest = 255
        size = len(os.fsencode(self.path.name))
        if size > longest:
            raise UsageError(f"{option} {path[:60]}...: the file name is {size} bytes, longer "
                             f"than the {longest} bytes the file system allows")
        if self.path.is_dir() or path.endswith(os.sep):
            raise UsageError(f"{option} {path}: is a directory; give a file name")
        if suffix and self.path.suffix.lower() != suffix:
            raise UsageError(f"{option} {path}: the file is written as {suffix[1:].upper()}; "
                             f"give a name ending in {suffix}")
        if not directory.is_dir():
            raise UsageError(f"{option} {path}: directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: directory {directory} is not writable")
        problem = not_regular(self.path)
        if problem:
            raise UsageError(f"{option} {path}: {problem}; give a file name")
        for name in inputs:
            if os.path.exists(name) and os.path.exists(path) and os.path.samefile(name, path):
                raise UsageError(f"{option} {path}: is an input file of this command; "
                                 f"choose another name")
        try:
            self._lock = reserve(self.path)
        except Reserved:
            raise UsageError(f"{option} {path}: is being written by another hh-plugin "
                             f"command") from None
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot be created: {exc.strerror}") from None
        if not force and os.path.lexists(self.path):
            self.release()
            raise UsageError(f"{option} {path}: exists; use --force to overwrite it")

    def release(self) -> None:
        """End the reservation (the command wrote its result, or failed before)."""
        from .export.container.atomic import release

        if self._lock is not None:
            release(self.path, self._lock)
            self._lock = None


def _load(path: str):
    from .export.io import load_any

    return load_any(path, isolate=True)


def _is_network(record) -> bool:
    from .export.network_file import NetworkRecord

    return isinstance(record, NetworkRecord)


def _check_readable_size(n_bytes: int, what: str) -> None:
    from .export.container.limits import Limits

    limit = Limits.default().max_bytes
    if n_bytes > limit:
        raise UsageError(f"{what} would hold {n_bytes / 2**20:.0f} MiB of arrays, more than "
                         f"the reader's limit of {limit / 2**20:.0f} MiB, so it could not be "
                         f"read back; make it smaller or raise HH_PLUGIN_MAX_READ_BYTES")


def _check_environment() -> None:
    """The reader's limits from the environment, refused as a usage error if malformed."""
    from .export.container.limits import Limits
    from .export.container.sandbox import default_timeout

    try:
        Limits.default()
        default_timeout()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ------------------------------------------------------------------ commands
def _cmd_make_case(args, outputs) -> int:
    from .export.case import make_case
    from .model import HHSpec
    from .model.limits import step_problem

    model = HHSpec().model
    problem = step_problem(args.dt, model)
    if problem:
        raise UsageError(f"--dt {args.dt:g}: {problem}")
    steps = int(round(args.duration / args.dt))
    if steps < 1:
        raise UsageError(f"--duration {args.duration:g} ms is shorter than one step of "
                         f"{args.dt:g} ms")
    itemsize = 4 if args.dtype == "float32" else 8
    _check_readable_size(steps * args.neurons * itemsize, "the case")
    out = _Output(args.output, args.force)
    outputs.append(out)
    case = make_case(args.neurons, args.duration, args.dt, args.seed, args.dtype,
                     noise=args.noise, heterogeneous=not args.homogeneous)
    case.save(out.path, overwrite=True)  # replaces the placeholder
    out.placeholder = None
    print(f"wrote {args.output}: {args.neurons} neurons, {len(case.input)} steps of "
          f"{args.dt:g} ms, {args.dtype}, "
          f"{'homogeneous' if args.homogeneous else 'heterogeneous'} parameters")
    return EXIT_OK


def _torch_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {name}: not a torch device ({exc})") from None
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--device {name}: not available on this machine ({detail})") from None
    return device


def _cmd_run(args, outputs) -> int:
    import time

    from .export.runner import check_case, run_case

    for name in ("integration", "atol", "threads"):
        if getattr(args, name) is not None and args.backend != "neuron":
            raise UsageError(f"--{name} applies to --backend neuron")
    if args.backend == "neuron":
        return _cmd_run_neuron(args, outputs)
    options = {}
    if args.backend == "torch":
        if args.target:
            raise UsageError("--target applies to --backend brian2")
        import torch

        options["device"] = _torch_device(args.device or "cpu")
        if args.dtype:
            options["dtype"] = getattr(torch, args.dtype)
    else:
        for name in ("device", "dtype"):
            if getattr(args, name):
                raise UsageError(f"--{name} applies to --backend torch (Brian2 computes in "
                                 f"float64 on the CPU)")
        options["target"] = args.target or "numpy"
    record = _record_names(args)
    out = _Output(args.output, args.force, inputs=[args.case])
    outputs.append(out)
    case = _load(args.case)
    if _is_network(case):
        return _run_network(case, args, options, out, record)
    if record is not None:
        from .export.runner import record_variables

        try:
            options["record"] = record_variables(case, record)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--record: {exc}") from None
    if args.steps is not None:
        raise UsageError("--steps applies to network files (a case runs its input's length)")
    if options.get("target") == "cpp_standalone":
        raise UsageError("--target cpp_standalone applies to network files")
    check_case(case)
    steps, neurons = len(case.input), case.input[0].size
    itemsize = 4 if (args.dtype or str(case.dtype)) == "float32" else 8
    traced = len(options.get("record", case.spec.model.state_names))
    _check_readable_size(steps * neurons * (traced * itemsize + 1) + 8 * steps, "the result")
    start = time.perf_counter()
    result = run_case(case, args.backend, progress=sys.stderr.isatty(), **options)
    elapsed = time.perf_counter() - start
    result.save(out.path, overwrite=True)
    out.placeholder = None
    spikes = int(result.traces["spikes"].sum())
    print(f"wrote {args.output}: {args.backend}, {result.n_steps} steps, {spikes} spikes, "
          f"{elapsed:.2f} s")
    return EXIT_OK


def _record_names(args):
    """``--record`` (repeatable, comma-separated) as a tuple of names, or ``None``."""
    if not args.record:
        return None
    record = tuple(name.strip() for item in args.record for name in item.split(",")
                   if name.strip())
    if not record:
        raise UsageError("--record: give state variable names such as V")
    return record


def _cmd_run_neuron(args, outputs) -> int:
    """``run --backend neuron``: a network file in NEURON, in one process or as every rank
    of ``mpirun`` (each rank reads the file; rank 0 reserves and writes the output)."""
    from .neuron import mpi

    for name in ("device", "dtype", "target"):
        if getattr(args, name):
            raise UsageError(f"--{name} does not apply to --backend neuron (NEURON computes "
                             f"in float64 on the CPU)")
    if args.atol is not None and args.integration == "fixed":
        raise UsageError("--atol applies to --integration cvode")
    record = _record_names(args)
    root = mpi.launcher_rank() == 0
    out = None
    if root:
        out = _Output(args.output, args.force, inputs=[args.case])
        outputs.append(out)
    case = _load(args.case)
    if not _is_network(case):
        raise UsageError("--backend neuron runs network files (formats 1.1, 1.2)")
    from .neuron import Integration

    integration = (Integration.fixed() if args.integration == "fixed"
                   else Integration.cvode(args.atol if args.atol is not None else 1e-6))
    options = {"integration": integration, "threads": args.threads or 1}
    if record is None and options["threads"] > 1 and integration.method == "cvode":
        record = ()  # NEURON 9.0.2 samples V wrongly with CVODE and threads: spikes only
    if record is not None and set(record) - {"V"}:
        raise UsageError(f"--record: the neuron backend records V only, not "
                         f"{sorted(set(record) - {'V'})}")
    return _run_network(case, args, options, out, record, "neuron")


def _run_network(record, args, options, out, names=None, backend=None) -> int:
    import time

    import numpy as np

    from .export import save_network
    from .export.network_run import run_network

    spec = record.spec
    timed = [c.steps for c in spec.currents if not c.is_constant]
    steps = args.steps or (min(timed) if timed else None)
    if steps is None:
        raise UsageError("the network's inputs do not fix a run length: give --steps")
    neurons = sum(p.size for p in spec.populations.values())
    _check_readable_size(steps * neurons * 9, "the result")
    backend = backend or args.backend
    if backend == "brian2" and options.get("target") == "cpp_standalone":
        backend, options = "cpp_standalone", {}
    start = time.perf_counter()
    if names is not None:
        unknown = [name for name in names if name not in spec.variables()]
        if unknown:
            raise UsageError(f"--record: unknown variable {unknown[0]!r}; the network's "
                             f"populations have {', '.join(spec.variables())}")
        options = {**options, "record": names}
    try:
        results = run_network(spec, backend, steps, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    elapsed = time.perf_counter() - start
    if results is None:  # an MPI rank other than 0: rank 0 writes the output
        return EXIT_OK
    provenance = {"source": str(args.case)}
    if backend == "neuron":
        from .neuron.mpi import parallel_context

        provenance.update(integration=options["integration"].describe(),
                          processes=str(int(parallel_context().nhost())),
                          threads=str(options["threads"]))
    save_network(out.path, spec, results, backend=backend, overwrite=True,
                 provenance=provenance)
    out.placeholder = None
    spikes = sum(int(np.sum(r)) for r in results["spikes"].values())
    print(f"wrote {args.output}: network on {backend}, {steps} steps, {spikes} spikes, "
          f"{elapsed:.2f} s")
    return EXIT_OK


def _crosscheck_networks(a, b, args, out) -> int:
    from .export.network_run import compare_networks, comparison_table, plot_rasters

    if not (_is_network(a) and _is_network(b)):
        raise UsageError("one file holds a network, the other a single population")
    for option in ("atol_gate", "spike_steps"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} applies to single-population "
                             f"files")
    rows = compare_networks(a, b)
    print(comparison_table(rows, backends=(a.backend, b.backend)))
    atol = 1e-6 if args.atol_V is None else args.atol_V
    spike_atol = args.spike_atol
    if spike_atol is not None:
        untimed = [r.name for r in rows if not r.timed and (r.spikes_a or r.spikes_b)]
        if untimed:
            raise UsageError(f"--spike-atol: no spike times for {', '.join(untimed)} in both "
                             f"files (runs that record V store them, format 1.2)")
        # spikes may move to a neighbouring step; each neuron's spikes are paired in order
        passed = all(r.same_counts and (r.max_spike_dt is None or r.max_spike_dt <= spike_atol)
                     and (not r.identical_spikes or r.max_dV is None or r.max_dV <= atol)
                     for r in rows)
        verdict = (f"the same spikes per neuron, times within {spike_atol:g} ms" if passed
                   else f"the runs differ (spike counts per neuron, or spike times over "
                        f"{spike_atol:g} ms)")
    else:
        passed = all(r.identical_spikes and (r.max_dV is None or r.max_dV <= atol)
                     for r in rows)
        verdict = (f"identical spikes, max |dV| within {atol:g} mV" if passed else
                   f"the runs differ (spikes, or |dV| over {atol:g} mV)")
    if out is not None:
        from .export.container.atomic import atomic_create

        def fill(tmp, fd, check):
            with open(tmp, "wb") as handle:
                plot_rasters(a, b, handle, labels=(f"{args.a} ({a.backend})",
                                                   f"{args.b} ({b.backend})"))
        atomic_create(out.path, fill, overwrite=True)
        out.placeholder = None
        print(f"plot: {args.plot}")
    print(verdict)
    return EXIT_OK if passed else EXIT_FAIL


def _cmd_crosscheck(args, outputs) -> int:
    from .export.crosscheck import compare
    from .export.report import plot, table

    out = None
    if args.plot:
        out = _Output(args.plot, args.force, inputs=[args.a, args.b], suffix=".png",
                      option="--plot")
        outputs.append(out)
    a, b = _load(args.a), _load(args.b)
    if _is_network(a) or _is_network(b):
        return _crosscheck_networks(a, b, args, out)
    result = compare(a, b, atol_V=args.atol_V, atol_gate=args.atol_gate,
                     spike_steps=args.spike_steps, spike_atol=args.spike_atol)
    print(table(result, worst=args.worst, backends=(a.backend, b.backend)))
    if out is not None:
        from .export.container.atomic import atomic_create

        def fill(tmp, fd, check):
            with open(tmp, "wb") as handle:  # a file object: PNG whatever the temporary name
                plot(result, a, b, handle)
        atomic_create(out.path, fill, overwrite=True)
        out.placeholder = None
        print(f"plot: {args.plot}")
    return EXIT_OK if result.passed else EXIT_FAIL


def _describe(name: str, array, unit: str) -> str:
    import numpy as np

    array = np.asarray(array)
    if array.ndim == 0:
        return f"  {name:<8} {float(array):.6g} {unit}"
    text = f"  {name:<8} {array.dtype}{list(array.shape)} {unit}"
    if array.size and array.dtype.kind == "f":
        text += f"  min {array.min():.6g} max {array.max():.6g}"
    return text


def _cmd_inspect(args, outputs) -> int:
    r = _load(args.file)
    if _is_network(r):
        from .export.errors import printable
        from .export.network_file import summary

        print("\n".join(printable(line) for line in
                        [f"{args.file}:"] + summary(r).splitlines()))
        return EXIT_OK
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
    from .export.errors import printable

    print("\n".join(printable(line) for line in lines))  # strings from the file, escaped
    return EXIT_OK


_COMMANDS = {"make-case": _cmd_make_case, "run": _cmd_run, "crosscheck": _cmd_crosscheck,
             "inspect": _cmd_inspect}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line each, once per message."""
    text = " ".join(str(message).split())
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(f"hh-plugin: warning: {text}", file=sys.stderr)


_SHOWN: set = set()


def _one_line(exc: BaseException) -> str:
    from .text import printable  # no numpy: this runs after any failure, even mid-import

    return printable(" ".join(str(exc).split()) or type(exc).__name__)


_INTERRUPTED = False


def _on_interrupt(signum, frame):
    """SIGINT: remember it, then stop the way Python's default handler does.

    A KeyboardInterrupt that lands inside the import of a C extension (numpy, torch, h5py)
    can come out as an ImportError or RuntimeError instead; the flag tells main() that the
    failure was the interrupt, not a bug."""
    global _INTERRUPTED
    _INTERRUPTED = True
    raise KeyboardInterrupt


def _catch_interrupts():
    """Install :func:`_on_interrupt` for SIGINT where Python's default handler is active
    (the main thread of a process); returns the handler to restore, or None."""
    import signal

    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            return signal.signal(signal.SIGINT, _on_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        pass
    return None


def main(argv=None) -> int:
    """Entry point of ``hh-plugin``; returns the exit status (see the module docstring)."""
    global _INTERRUPTED
    command, outputs, shown, handler = "", [], None, None
    _INTERRUPTED = False
    try:
        handler = _catch_interrupts()
        import warnings

        args = _parser().parse_args(argv)
        command = args.command
        shown, warnings.showwarning = warnings.showwarning, _show_warning
        from .export.errors import CrosscheckError, FormatError, SimulationError
        from .model.limits import StepTooLong

        try:
            _check_environment()
            return _COMMANDS[command](args, outputs)
        except (UsageError, FormatError, CrosscheckError, SimulationError, StepTooLong,
                FileExistsError, FileNotFoundError, PermissionError,
                IsADirectoryError) as exc:
            if _INTERRUPTED:
                raise KeyboardInterrupt from exc
            print(f"hh-plugin {command}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupted()
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except BrokenPipeError:
        # The reader of stdout went away (``hh-plugin inspect f.h5 | head``): stop quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - a bug: one line, its own exit status
        if _INTERRUPTED:  # an interrupted import fails with ImportError, RuntimeError, ...
            return _interrupted()
        print(f"hh-plugin {command}: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(please report this)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        for out in outputs:
            out.release()
        if shown is not None:
            warnings.showwarning = shown
        if handler is not None:
            import signal

            signal.signal(signal.SIGINT, handler)


def _interrupted() -> int:
    print("hh-plugin: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
