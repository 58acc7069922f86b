"""Issue 13, fault 9: a process killed during the first build of the fused kernel must not
make later runs hang; waiting for another build has a timeout and falls back with a warning.

The build is simulated: ``torch.utils.cpp_extension.load_inline`` is replaced, in child
processes, by a stand-in that behaves like torch's (it guards the build with torch's
``FileBaton`` on ``<build>/lock`` and waits while that file exists), then "compiles" for a
while. Compiling for real would take a minute per test.
"""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hh_plugin.torch.fused.cpp import compiler_available

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(compiler_available() is not None,
                                reason="the fused path needs a C++ compiler and ninja")

#: A child process's start: torch's ``load_inline`` replaced by a stand-in build that holds
#: torch's own build lock for ``sys.argv[1]`` seconds, then fails (shared with test_ddp).
FAKE_BUILD = textwrap.dedent("""
    import os, sys, time, types, warnings
    import torch
    import torch.utils.cpp_extension as cpp_extension
    from torch.utils.file_baton import FileBaton

    seconds = float(sys.argv[1])

    def fake_load_inline(name, cpp_sources, functions, extra_cflags, extra_ldflags,
                         build_directory, verbose=False):
        baton = FileBaton(os.path.join(build_directory, "lock"))
        if baton.try_acquire():          # torch's own guard of a build
            try:
                print("BUILDING", flush=True)
                time.sleep(seconds)      # the compiler at work
            finally:
                baton.release()
        else:
            baton.wait()                 # another build: torch waits while 'lock' exists
        raise RuntimeError("stand-in build: no kernel")   # -> the fallback path

    cpp_extension.load_inline = fake_load_inline
""")

CHILD = FAKE_BUILD + textwrap.dedent("""
    from hh_plugin import HHSpec
    from hh_plugin.torch import HH
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z, state = HH(p=HHSpec(), dt=1e-5, V_init="default", seed=0)(torch.full((1000, 3), 10.0))
    print("RESULT", int(z.sum()), flush=True)
    for w in caught:
        print("WARNING", str(w.message).replace(chr(10), " "), flush=True)
""")


def _env(cache, **extra):
    return {**os.environ, "HH_PLUGIN_CACHE_DIR": str(cache), **extra,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start(cache, seconds, **extra):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(seconds)], env=_env(cache, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc, word, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith(word):
            return
        assert line or proc.poll() is None, proc.stderr.read()
    raise AssertionError(f"no {word} within {timeout} s")


def _run(cache, seconds, timeout=120, **extra):
    return subprocess.run([sys.executable, "-c", CHILD, str(seconds)], env=_env(cache, **extra),
                          capture_output=True, text=True, timeout=timeout)


def test_build_killed_mid_way_does_not_block_later_runs(tmp_path):
    # it left torch's lock file; every later CPU run hung forever after "about 30 s"
    first = _start(tmp_path, 600)
    _wait_for(first, "BUILDING")
    first.kill()
    first.wait()
    assert list(tmp_path.rglob("lock")), "the killed build should have left torch's lock"
    later = _run(tmp_path, 0.1, timeout=600)
    assert later.returncode == 0, later.stderr
    assert "RESULT" in later.stdout and "BUILDING" in later.stdout  # built, not waited


def test_waiting_for_a_live_build_times_out_and_falls_back(tmp_path):
    first = _start(tmp_path, 3600)
    try:
        _wait_for(first, "BUILDING")
        later = _run(tmp_path, 0.1, timeout=600, HH_PLUGIN_BUILD_TIMEOUT="2")
        holding = first.poll() is None  # the first still builds: the later one gave up
    finally:
        first.kill()
        first.wait()
    assert later.returncode == 0, later.stderr
    assert holding and "BUILDING" not in later.stdout
    assert "RESULT" in later.stdout
    warning = [line for line in later.stdout.splitlines() if line.startswith("WARNING")]
    assert any("more than 2 s" in w and "falling back" in w for w in warning), later.stdout
    assert "waiting for another process" in later.stderr


def test_fallback_gives_the_step_loop_result(tmp_path):
    import torch

    from hh_plugin import HHSpec
    from hh_plugin.torch import HH

    done = _run(tmp_path, 0.1)
    assert done.returncode == 0, done.stderr
    expected = HH(p=HHSpec(), dt=1e-5, V_init="default", seed=0, path="naive")(torch.full((1000, 3), 10.0))[0]
    assert f"RESULT {int(expected.sum())}" in done.stdout
    assert "falling back to the naive path" in done.stdout


def test_cache_key_covers_the_build_environment_and_every_build_is_announced(
        tmp_path, monkeypatch, capsys):
    # issue 18, 6: a cache made by another virtual environment held a build under the same
    # key; torch rebuilt it for 75 s and, since a .so was there, nothing said "compiling"
    import torch
    import torch.utils.cpp_extension as cpp_extension

    from hh_plugin.torch.fused import cpp

    environment = cpp.build_environment()
    compiler = next(part for part in environment if part.startswith("compiler "))
    assert any(char.isdigit() for char in compiler.split(maxsplit=2)[-1])  # its version
    assert any(str(Path(torch.__file__).parent) in part and "cxx11abi=" in part
               for part in environment)
    assert any(part.startswith("python " + sys.version) for part in environment)

    builds = []

    def load_inline(name, cpp_sources, functions, extra_cflags, extra_ldflags,
                    build_directory, verbose=False):
        builds.append(name)
        Path(build_directory, f"{name}.so").write_bytes(b"")
        return name
    monkeypatch.setattr(cpp_extension, "load_inline", load_inline)
    monkeypatch.setenv("HH_PLUGIN_CACHE_DIR", str(tmp_path))

    def build():
        name = cpp.cached_build("hh_test", "int f() { return 1; }", ["f"], "the test kernel")
        return name, capsys.readouterr().err.count("compiling the test kernel")

    first, announced = build()
    assert announced == 1 and (tmp_path / "torch_extensions" / first / cpp.BUILD_STAMP).exists()
    assert build() == (first, 0)  # cached: loaded without a word
    # another torch installation (another virtual environment): another folder, announced
    monkeypatch.setattr(cpp, "_ENVIRONMENT", [part.replace(str(Path(torch.__file__).parent),
                                                           "/elsewhere/torch")
                                              for part in environment])
    other, announced = build()
    assert other != first and announced == 1
    # a folder with a library but no record of a finished build (e.g. copied from
    # elsewhere, or interrupted): the build that torch may run is announced
    (tmp_path / "torch_extensions" / other / cpp.BUILD_STAMP).unlink()
    assert build() == (other, 1)


def test_a_short_wait_for_the_build_lock_is_silent(tmp_path, monkeypatch, capsys):
    # issue 21, failure 9: under torchrun every rank printed "waiting for another process to
    # finish building" while another one merely loaded the cached kernel
    import fcntl
    import threading

    from hh_plugin.torch.fused import cpp

    holder = os.open(tmp_path / "hh_plugin_build.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's load holds the lock
    waiting = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds):  # the waiter's poll: it is waiting now
        waiting.set()
        real_sleep(seconds)

    monkeypatch.setattr(cpp.time, "sleep", sleep)
    done = []

    def waiter():
        with cpp._build_lock(tmp_path, timeout=600):
            done.append(True)

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(60)
    os.close(holder)  # the load finishes: the lock is released
    thread.join(60)
    assert done == [True]
    assert "waiting for another process" not in capsys.readouterr().err
