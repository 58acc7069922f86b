"""Issue 22, item 10: a standalone build reports its progress, and a build that stalls is
stopped and reported with the step it was in (:mod:`hh_plugin.brian2.make_watch`).

The stalls are made with a stand-in compiler that writes an empty object at once for
every source but one, and hangs on that one; the stall is declared after a short
``stall_timeout`` without a new object, which the hanging compiler guarantees (no test
depends on how fast the machine is: the other objects appear before the hang starts).
"""

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hh_plugin.brian2 import make_watch

FAKE_COMPILER = textwrap.dedent("""\
    #!/bin/sh
    # stand-in compiler: "-MM" writes no dependencies; "SRC -o OBJ" writes an empty OBJ,
    # except for a source whose name contains $HANG_ON, where it hangs
    for arg in "$@"; do [ "$arg" = "-MM" ] && exit 0; done
    src=""; obj=""; prev=""
    for arg in "$@"; do
        [ "$prev" = "-o" ] && obj="$arg"
        case "$arg" in *.c|*.cpp|*.cu) src="$arg";; esac
        prev="$arg"
    done
    case "$src" in *"$HANG_ON"*) sleep 600; exit 1;; esac
    [ -n "$obj" ] && : > "$obj"
    exit 0
    """)

MAKEFILE = textwrap.dedent("""\
    PROGRAM = main
    SRCS = a.c b.c c.c
    OBJS = ${SRCS:.c=.o}
    all: $(PROGRAM)
    $(PROGRAM): $(OBJS)
    \t$(LINK) $(OBJS) -o $(PROGRAM)
    %.o : %.c
    \t$(CC) -c $< -o $@
    """)


def _fake(tmp_path: Path) -> Path:
    fake = tmp_path / "fake-cc"
    fake.write_text(FAKE_COMPILER)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "makefile").write_text(MAKEFILE)
    for name in ("a.c", "b.c", "c.c"):
        (project / name).write_text("int x;\n")
    return project


def _watch(project, fake, hang_on, stall_timeout, link=None):
    env = {**os.environ, "HANG_ON": hang_on}
    return subprocess.run(
        [sys.executable, make_watch.__file__, "--stall-timeout", str(stall_timeout),
         "--report", make_watch.REPORT_NAME, "--", "make", "-j1", f"CC={fake}",
         f"LINK={link or fake}"], cwd=project, env=env, capture_output=True, text=True,
        timeout=300, stdin=subprocess.DEVNULL)


def test_a_build_prints_one_line_per_compiled_object(tmp_path):
    project = _project(tmp_path)
    done = _watch(project, _fake(tmp_path), hang_on="nothing", stall_timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[hh_plugin]")]
    assert lines and lines[-1].startswith("[hh_plugin] make: 3 of 3 objects compiled")
    assert (project / "main").exists()
    assert not (project / make_watch.REPORT_NAME).exists()


def test_a_failing_make_keeps_its_exit_status(tmp_path):
    project = _project(tmp_path)
    done = _watch(project, _fake(tmp_path), hang_on="nothing", stall_timeout=300,
                  link="false")
    assert done.returncode == 2  # make's status for a failed rule
    assert not (project / make_watch.REPORT_NAME).exists()


def test_a_stalled_build_is_stopped_naming_the_source_being_compiled(tmp_path):
    project = _project(tmp_path)
    done = _watch(project, _fake(tmp_path), hang_on="b.c", stall_timeout=2)
    assert done.returncode == make_watch.STALLED, done.stdout + done.stderr
    report = (project / make_watch.REPORT_NAME).read_text()
    assert "compiling b.c (1 of 3 objects compiled)" in report
    assert "no progress for 2 s" in report
    assert "make stopped" in done.stdout
    # the hanging compiler was stopped with make's process group
    left = subprocess.run(["pgrep", "-af", "fake-cc"], capture_output=True, text=True)
    assert str(tmp_path) not in left.stdout
    assert not (project / "c.o").exists()


def test_the_step_names_linking_and_dependencies():
    progress = make_watch.Progress(Path("."), ["a.cu", "b.cpp"], "main")
    assert progress.objects == ["a.o", "b.o"]
    assert progress.step((1, 2, 3, None), []) == "linking main (all 2 objects compiled)"
    assert progress.step((None, None, None, None), []).startswith("computing the dependencies")
    assert "waiting for b.cpp" in progress.step((1, None, 3, None), [])


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        make_watch.main(["--stall-timeout", "0", "--", "make"])
    with pytest.raises(SystemExit):
        make_watch.main(["--stall-timeout", "5"])


brian2 = pytest.importorskip("brian2")


def test_a_stalled_cpp_standalone_build_raises_naming_the_step(tmp_path, capfd):
    from brian2 import ms, prefs, run, start_scope

    from hh_plugin.brian2 import neuron_group, use_device
    from hh_plugin.brian2.device import BuildStalled

    fake = _fake(tmp_path)
    os.environ["HANG_ON"] = "objects.cpp"
    saved = list(prefs.devices.cpp_standalone.extra_make_args_unix)
    prefs.devices.cpp_standalone.extra_make_args_unix = ["-j2", f"CXX={fake}"]
    try:
        start_scope()
        with use_device("cpp_standalone", directory=str(tmp_path / "cpp"),
                        build_on_run=False, stall_timeout=3) as session:
            group = neuron_group(3)
            run(0.1 * ms)
            with pytest.raises(BuildStalled, match=r"compiling objects\.cpp \(\d+ of \d+ "
                                                   r"objects compiled\)"):
                session.build()
            del group
        assert prefs.devices.cpp_standalone.make_cmd_unix == "make"  # restored
        assert make_watch.PROGRESS_FD_VARIABLE not in os.environ
        # Brian2 keeps the build's output in its own log; the lines reach the user's stderr
        err = capfd.readouterr().err
        assert "[hh_plugin] make stopped: the build made no progress for 3 s" in err
        assert "[hh_plugin] make: " in err
    finally:
        prefs.devices.cpp_standalone.extra_make_args_unix = saved
        del os.environ["HANG_ON"]
        start_scope()


def test_stall_timeout_is_checked():
    from hh_plugin.brian2 import use_device

    for bad in (0, -1.0, "10", True):
        with pytest.raises(ValueError, match="stall_timeout"):
            use_device("cpp_standalone", stall_timeout=bad)
