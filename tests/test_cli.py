"""The hh-plugin command line: make-case, run, crosscheck, inspect; errors without tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_crosscheck_pass_with_plot(runs, capsys):
    assert main(["crosscheck", str(runs / "t.h5"), str(runs / "b.h5"),
                 "--plot", str(runs / "cc.png"), "--worst", "3"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "max|dV| mV" in out and "first divergence: none" in out
    assert (runs / "cc.png").read_bytes()[:4] == b"\x89PNG"


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
    assert "truncated or corrupt" in proc.stderr and "Traceback" not in proc.stderr
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

