"""The hh-plugin command line: make-case, run, crosscheck, inspect; errors without tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hh_plugin.cli import main
from hh_plugin.export import HHRecord, load

pytest.importorskip("hh_plugin.brian2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    assert main(["make-case", "--neurons", "200", "--duration", "10", "--dt", "0.01",
                 "--seed", "1", "-o", str(d / "case.h5")]) == 0
    assert main(["run", "--backend", "torch", str(d / "case.h5"), "-o", str(d / "t.h5")]) == 0
    assert main(["run", "--backend", "brian2", str(d / "case.h5"), "-o", str(d / "b.h5")]) == 0
    return d


def test_make_case_and_run(runs):
    case = load(runs / "case.h5")
    assert case.shape == (200,) and case.input.shape == (1000, 200) and case.dt == 0.01
    for name, backend in (("t.h5", "torch"), ("b.h5", "brian2")):
        r = load(runs / name)
        assert r.backend == backend and r.traces["V"].shape == (1000, 200)
        assert r.time == pytest.approx(10.0) and r.provenance["source"].endswith("case.h5")


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_run_records_only_the_variables_asked_for(runs, tmp_path, backend, capsys):
    """--record V: traces of V and spikes only, the same values as the full run's, the same
    final state (all variables), and a crosscheck against the full run passes."""
    out = tmp_path / f"{backend}_V.h5"
    assert main(["run", "--backend", backend, str(runs / "case.h5"), "--record", "V",
                 "-o", str(out)]) == 0
    full = load(runs / ("t.h5" if backend == "torch" else "b.h5"))
    part = load(out)
    assert set(part.traces) == {"time", "V", "spikes"}
    np.testing.assert_array_equal(part.traces["V"], full.traces["V"])
    np.testing.assert_array_equal(part.traces["spikes"], full.traces["spikes"])
    for name in ("V", "m", "h", "n"):
        np.testing.assert_array_equal(part.state[name], full.state[name])
    assert main(["crosscheck", str(out), str(runs / "t.h5")]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("value, message", [("m", "must include V"),
                                            ("V,w", "unknown state variable 'w'")])
def test_run_record_names_are_checked(runs, tmp_path, capsys, value, message):
    assert main(["run", "--backend", "torch", str(runs / "case.h5"), "--record", value,
                 "-o", str(tmp_path / "x.h5")]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_crosscheck_pass_with_plot(runs, capsys):
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"),
                 "--plot", str(runs / "cc.png"), "--worst", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "max|dV| mV" in out and "first divergence: none" in out
    assert (runs / "cc.png").read_bytes()[:4] == b"\x89PNG"


def test_crosscheck_table_is_sorted_by_its_max_dV_column(runs, capsys):
    # issue 18, 8: "worst first" was a hidden score, not the column shown
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"), "--worst", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["neuron", "max|dV|"])
    assert "worst first (failed first, then by max |dV|)" in lines[header - 1]
    dV = [float(line.split()[1]) for line in lines[header + 1:header + 51]]
    assert len(dV) == 50 and dV == sorted(dV, reverse=True) and dV[0] > dV[-1]


def test_crosscheck_fails_when_tolerance_exceeded(runs, capsys):
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"),
                 "--atol-V", "1e-14"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_crosscheck_refuses_different_time_axes(runs, tmp_path, capsys):
    r = load(runs / "t.h5")
    short = HHRecord(spec=r.spec, dt=r.dt, traces={k: v[:10] for k, v in r.traces.items()},
                     provenance=r.provenance)
    short.save(tmp_path / "short.h5")
    assert main(["crosscheck", str(runs / "t.h5"), str(tmp_path / "short.h5")]) == 2
    assert "time axes differ" in capsys.readouterr().err


def test_inspect(runs, capsys):
    assert main(["inspect", str(runs / "b.h5")]) == 0
    out = capsys.readouterr().out
    assert "hh_plugin format 1.0" in out and "backend brian2" in out and "gNa" in out
    assert "traces: 1000 rows" in out


def test_refuses_to_overwrite_unless_forced(runs, tmp_path, capsys):
    out = tmp_path / "t.h5"
    out.write_bytes(b"keep me")
    assert main(["run", "--backend", "torch", str(runs / "case.h5"), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["make-case", "--neurons", "3", "--duration", "1", "-o", str(out),
                 "--force"]) == 0
    assert load(out).shape == (3,)


@pytest.mark.parametrize("content", [b"", b"not hdf5 at all", None])
def test_bad_input_file_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    for argv in (["inspect", str(path)],
                 ["run", "--backend", "torch", str(path), "-o", str(tmp_path / "o.h5")],
                 ["crosscheck", str(path), str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "bad.h5" in err


def test_run_refuses_a_file_that_is_not_a_case(runs, tmp_path, capsys):
    assert main(["run", "--backend", "brian2", str(runs / "t.h5"),
                 "-o", str(tmp_path / "o.h5")]) == 2
    assert "not a runnable case" in capsys.readouterr().err


def test_subprocess_truncated_file(runs, tmp_path):
    data = (runs / "case.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 3])
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "hh_plugin.cli", "inspect",
                           str(tmp_path / "trunc.h5")], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "truncated" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "hh_plugin.cli", "crosscheck",
                           str(runs / "t.h5"), str(runs / "b.h5")], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "PASS" in proc.stdout
    assert proc.stderr == ""  # no progress bar or noise when not a terminal


def test_subprocess_run_is_quiet_without_a_terminal(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "hh_plugin.cli"]
    subprocess.run(cmd + ["make-case", "--neurons", "5", "--duration", "2", "-o", "c.h5"],
                   check=True, env=env, cwd=tmp_path, capture_output=True)
    for backend in ("torch", "brian2"):
        proc = subprocess.run(cmd + ["run", "--backend", backend, "c.h5", "-o", f"{backend}.h5"],
                              env=env, cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "wrote" in proc.stdout and "step" not in proc.stderr and "%" not in proc.stderr


@pytest.mark.parametrize("backend", ["torch", "brian2"])
def test_progress_bar_path(runs, backend, capsys):
    from hh_plugin.export.runner import run_case

    case = load(runs / "case.h5")
    short = HHRecord(spec=case.spec, dt=case.dt, state=case.state, time=0.0,
                     input=case.input[:50], input_t_start=0.0)
    result = run_case(short, backend, progress=True)
    assert result.traces["V"].shape == (50, 200)
    assert backend in capsys.readouterr().err  # tqdm wrote its bar to stderr



# ----------------------------------------------------------------------------- issue 13
def _cli(*argv, cwd=None, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "hh_plugin.cli", *map(str, argv)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _one_error_line(err, command):
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"hh-plugin {command}: error:"), err
    assert "Traceback" not in err
    return lines[-1]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "-0.5", "x"])
@pytest.mark.parametrize("option", ["--atol-V", "--atol-gate"])
def test_crosscheck_tolerances_must_be_finite_and_nonnegative(runs, capsys, option, value):
    # fault 12: --atol-V nan reported PASS (the check was switched off)
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"), option, value]) == 2
    assert "PASS" not in capsys.readouterr().out
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"), "--spike-steps",
                 "-1"]) == 2


def test_crosscheck_plot_never_overwrites_without_force(runs, tmp_path, capsys):
    # fault 13: --plot b.png overwrote any file, an input included; x.txt: traceback;
    # '.': a hidden ./.png
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    a, b = str(runs / "t.h5"), str(runs / "b.h5")
    assert main(["crosscheck", a, b, "--plot", str(existing)]) == 2
    assert "--force" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    before = (runs / "b.h5").read_bytes()
    assert main(["crosscheck", a, b, "--plot", b, "--force"]) == 2
    assert (runs / "b.h5").read_bytes() == before
    (tmp_path / "b.png").write_bytes(before)  # an input that happens to be named .png
    assert main(["crosscheck", a, str(tmp_path / "b.png"), "--plot", str(tmp_path / "b.png"),
                 "--force"]) == 2
    assert "input file" in capsys.readouterr().err
    assert (tmp_path / "b.png").read_bytes() == before
    assert main(["crosscheck", a, b, "--plot", str(tmp_path / "x.txt")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["crosscheck", a, b, "--plot", "."]) == 2
    finally:
        os.chdir(here)
    assert "is a directory" in capsys.readouterr().err
    assert not (tmp_path / ".png").exists() and not (tmp_path / "x.txt").exists()
    assert main(["crosscheck", a, b, "--plot", str(existing), "--force"]) == 0
    assert existing.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("argv, message", [
    (["make-case", "--neurons", "0"], "--neurons: '0' must be >= 1"),
    (["make-case", "--neurons", "-3"], "--neurons"),
    (["make-case", "--dt", "nan"], "--dt: 'nan' is not a finite number"),
    (["make-case", "--duration", "inf"], "--duration: 'inf' is not a finite number"),
    (["make-case", "--noise", "-1"], "--noise"),
    (["make-case", "--seed", "-1"], "--seed"),
    (["make-case", "--dt", "0.5"], "longer than 0.1 ms"),
    (["make-case", "--neurons", "100000", "--duration", "10000"], "reader's limit"),
])
def test_make_case_arguments_are_validated(tmp_path, argv, message):
    # fault 14: raw tracebacks with exit status 1 (the code for "tolerances exceeded")
    proc = _cli(*argv, "-o", tmp_path / "c.h5")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c.h5").exists()


def test_run_device_that_is_not_there(runs, tmp_path):
    import torch

    device = "cuda" if not torch.cuda.is_available() else "cuda:99"
    proc = _cli("run", "--backend", "torch", "--device", device, runs / "case.h5",
                "-o", tmp_path / "o.h5")
    assert proc.returncode == 2
    assert "not available on this machine" in _one_error_line(proc.stderr, "run")
    assert not (tmp_path / "o.h5").exists()
    proc = _cli("run", "--backend", "brian2", "--device", "cpu", runs / "case.h5",
                "-o", tmp_path / "o.h5")
    assert proc.returncode == 2 and "applies to --backend torch" in proc.stderr


def test_run_case_that_blows_up_fails_early_without_output(tmp_path):
    # fault 14: a result containing NaN was found only when saving after the whole run
    from hh_plugin.export.case import make_case

    case = make_case(4, duration=50.0, dt=0.01, seed=0)
    case.input[100:, 1] = -1e300
    case.save(tmp_path / "huge.h5")
    for backend in ("torch", "brian2"):
        proc = _cli("run", "--backend", backend, tmp_path / "huge.h5",
                    "-o", tmp_path / f"{backend}.h5")
        assert proc.returncode == 2, proc.stderr
        line = _one_error_line(proc.stderr, "run")
        assert "NaN or infinite in step" in line, line
        assert "warning: input current up to 1e+300 uA" in proc.stderr, proc.stderr
        assert not (tmp_path / f"{backend}.h5").exists()


def test_run_refuses_a_case_with_a_meaningless_dt(tmp_path):
    # fault 11: dt = 20 ms gave a traceback (torch) and V down to -176 mV (Brian2);
    # dt = 1e300 gave "28 spikes"
    from hh_plugin.export import HHRecord
    from hh_plugin.export.case import make_case

    base = make_case(3, duration=1.0, dt=0.01, seed=0)
    for dt in (20.0, 1e300, 0.2):
        case = HHRecord(spec=base.spec, dt=dt, state=base.state, time=0.0,
                        input=base.input[:5], input_t_start=0.0)
        case.save(tmp_path / f"dt{dt:g}.h5")
        for backend in ("torch", "brian2"):
            proc = _cli("run", "--backend", backend, tmp_path / f"dt{dt:g}.h5",
                        "-o", tmp_path / "o.h5")
            assert proc.returncode == 2, proc.stderr
            line = _one_error_line(proc.stderr, "run")
            assert "longer than 0.1 ms, the longest step" in line and "accurate" in line
            assert not (tmp_path / "o.h5").exists()


def test_internal_error_has_its_own_exit_status(runs, tmp_path, capsys, monkeypatch):
    from hh_plugin.export import runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(runner, "run_case", broken)
    assert main(["run", "--backend", "torch", str(runs / "case.h5"),
                 "-o", str(tmp_path / "o.h5")]) == 3
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: a bug" in err and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()  # the reserved output is released


# Runs the command with SIGINT sent to itself when a chosen module is first imported: an
# event in the command's own start-up or run, not a delay that a loaded machine stretches.
# With "converted", the interrupt comes out of that import as an ImportError, as it does
# from C code that reports any failure of an import it makes as its own (CPython's
# PyCapsule_Import, the extension modules of numpy and torch).
INTERRUPT_AT_IMPORT = """
import os, signal, sys

class InterruptAt:
    def find_spec(self, name, path=None, target=None):
        if name != sys.argv[2]:
            return None
        sys.meta_path.remove(self)
        print("SIGINT at import of", name, file=sys.stderr, flush=True)
        if sys.argv[1] == "plain":
            os.kill(os.getpid(), signal.SIGINT)
            return None
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**9):  # Python runs the handler at the next instruction
                pass
        except KeyboardInterrupt as exc:
            raise ImportError(f"could not import module {name!r}") from exc
        raise AssertionError("SIGINT did not interrupt")

sys.meta_path.insert(0, InterruptAt())
from hh_plugin.cli import main
sys.exit(main(sys.argv[3:]))
"""

# start-up (argparse), inside the imports of numpy (numpy.dtypes is imported by numpy's C
# extension), sympy, torch and h5py, before the file is read, and when the run starts
INTERRUPT_POINTS = [("plain", "argparse"), ("converted", "numpy.dtypes"),
                    ("plain", "sympy.core"), ("converted", "hh_plugin.export.container.sandbox"),
                    ("converted", "torch._tensor"), ("converted", "h5py"),
                    ("plain", "hh_plugin.torch.fused.sequence")]


@pytest.mark.parametrize("mode, module", INTERRUPT_POINTS)
def test_ctrl_c_anywhere_in_start_up_or_run_exits_130_with_one_line(runs, tmp_path, mode,
                                                                    module):
    # fault 3: a Ctrl-C inside numpy's import came out as an ImportError; the error handler
    # imported numpy again (RuntimeError: CPU dispatcher tracer already initialized) and
    # printed a traceback
    out = tmp_path / "o.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPT_AT_IMPORT, mode, module, "run", "--backend", "torch",
         str(runs / "case.h5"), "-o", str(out)], env=env, capture_output=True, text=True,
        timeout=600)
    assert f"SIGINT at import of {module}" in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines()
             if not line.startswith(("SIGINT at import", "hh_plugin: compiling"))]
    assert lines == ["hh-plugin: interrupted"], proc.stderr[-3000:]
    assert not out.exists()  # the reserved output is released


def test_second_run_with_the_same_output_fails_at_once(runs, tmp_path, monkeypatch, capsys):
    # fault 15: the second computed the whole run, then failed and lost its result. The
    # second command starts while the first is inside its run (the patched run_case), so
    # no clock decides the order; it must fail without running the case.
    from hh_plugin.export import runner

    real_run_case = runner.run_case
    out = tmp_path / "o.h5"
    calls, second = [], {}

    def run_case(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:  # the first command, its output reserved: start the second
            second["status"] = main(["run", "--backend", "torch", str(runs / "case.h5"),
                                     "-o", str(out)])
            second["stderr"] = capsys.readouterr().err
            second["process"] = _cli("run", "--backend", "torch", runs / "case.h5", "-o", out)
        return real_run_case(*args, **kwargs)
    monkeypatch.setattr(runner, "run_case", run_case)
    assert main(["run", "--backend", "brian2", str(runs / "case.h5"), "-o", str(out)]) == 0
    assert calls == ["brian2"]  # neither second command ran the case
    assert second["status"] == 2 and "being written by another" in second["stderr"]
    assert second["process"].returncode == 2
    assert "being written by another" in second["process"].stderr
    assert load(out).backend == "brian2"


def test_version_and_help_for_every_option(capsys):
    from hh_plugin import __version__
    from hh_plugin.cli import _parser

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == (f"hh-plugin {__version__} (file formats: 1.0 "
                                                f"population files, 1.1-1.2 network files)")
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, f"{name}: {action.dest} has no help text"
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "exit status" in text
    assert main(["make-case", "--help"]) == 0
    assert "per-neuron parameters drawn with the seed" in " ".join(capsys.readouterr().out
                                                                   .split())


@pytest.mark.parametrize("argv, light", [(["--version"], True), (["--help"], True),
                                          (["run", "--help"], True),
                                          (["make-case", "--help"], False)])
def test_help_and_version_answer_without_the_simulators(argv, light):
    # issue 18: --help and --version imported the model (sympy, numpy), ~10 s under load
    code = ("import sys\nfrom hh_plugin.cli import main\nstatus = main(sys.argv[1:])\n"
            "heavy = sorted(m for m in ('torch', 'brian2', 'numpy', 'sympy', 'h5py') "
            "if m in sys.modules)\nprint('IMPORTED', *heavy, file=sys.stderr)\n"
            "sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("hh-plugin" if argv == ["--version"] else "usage:")
    imported = proc.stderr.split("IMPORTED")[-1].split()
    assert "torch" not in imported and "brian2" not in imported, imported
    if light:  # make-case --help shows the model's max_dt, read from the model
        assert imported == [], imported


def test_make_case_is_heterogeneous_and_seeded(tmp_path):
    assert main(["make-case", "--neurons", "30", "--duration", "1", "--seed", "5",
                 "-o", str(tmp_path / "a.h5")]) == 0
    assert main(["make-case", "--neurons", "30", "--duration", "1", "--seed", "5",
                 "-o", str(tmp_path / "b.h5")]) == 0
    assert main(["make-case", "--neurons", "30", "--duration", "1", "--seed", "5",
                 "--homogeneous", "-o", str(tmp_path / "h.h5")]) == 0
    a, b, h = (load(tmp_path / n) for n in ("a.h5", "b.h5", "h.h5"))
    defaults = a.spec.model.defaults
    for name in ("gNa", "gK", "gL"):
        values = a.spec.parameters[name]
        assert values.shape == (30,) and len(set(values)) == 30
        assert np.all(np.abs(values / defaults[name] - 1) <= 0.1)
        assert np.array_equal(values, b.spec.parameters[name])
        assert np.ndim(h.spec.parameters[name]) == 0
    assert np.array_equal(a.input, b.input) and np.array_equal(a.input, h.input)


def test_directory_and_device_inputs_are_named(tmp_path):
    # fault 5: run on a directory or on an empty device file said "no such file"
    for source, message in ((tmp_path, "is a directory, not a file"),
                            ("/dev/null", "is not a regular file")):
        proc = _cli("run", "--backend", "torch", source, "-o", tmp_path / "o.h5")
        assert proc.returncode == 2
        assert message in _one_error_line(proc.stderr, "run")
        assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("name, value", [("HH_PLUGIN_MAX_READ_BYTES", "lots"),
                                         ("HH_PLUGIN_READ_TIMEOUT", "-1")])
def test_malformed_limits_in_the_environment(runs, monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert main(["inspect", str(runs / "case.h5")]) == 2
    assert name in capsys.readouterr().err


def test_ctrl_c_during_a_brian2_run_is_an_interrupt_not_a_short_result(runs, monkeypatch):
    # Brian2 turns Ctrl-C during a run into a stop at the current step; the run returned
    # normally and a truncated result would have been saved
    import brian2

    from hh_plugin.export.runner import run_case

    real = brian2.Network.run

    def stopped_half_way(self, duration, *args, **kwargs):
        return real(self, duration / 2, *args, **kwargs)
    monkeypatch.setattr(brian2.Network, "run", stopped_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_case(load(runs / "case.h5"), "brian2")


def test_strings_from_a_file_are_printed_escaped(tmp_path):
    # found by the fuzz run: a crafted string (a lone surrogate) came out as invalid UTF-8;
    # a terminal escape sequence would have been interpreted by the terminal
    import json

    import h5py

    from hh_plugin.export.case import make_case
    from hh_plugin.export import write_checksum

    path = tmp_path / "f.h5"
    make_case(3, duration=0.1, seed=0).save(path)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        meta["provenance"]["notes"] = "@@"
        f.attrs["metadata"] = json.dumps(meta).replace('"@@"', '"\\u001b[2J red \\udcb8"')
        f["state"].create_dataset("\x1b[31mX", data=[1.0])
    write_checksum(path)
    proc = _cli("inspect", path)
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\\x1b[31mX" in proc.stderr
    with h5py.File(path, "r+") as f:
        del f["state/\x1b[31mX"]
    write_checksum(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "hh_plugin.cli", "inspect", str(path)],
                          capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("utf-8")  # valid UTF-8
    assert "\x1b" not in out and "notes: \\x1b[2J red \\udcb8" in out
