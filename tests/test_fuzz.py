"""Fuzz tests of the reader and the command line (hypothesis; a few hundred examples, about
a minute). The long run with thousands of files is ``tests/fuzz_reader.py``.

Properties: whatever the mutation, ``load`` returns a record or raises a one-line
``FormatError`` (never another exception, a hang or a crash), never returns data from
outside the file, and ``hh-plugin inspect`` exits with 0 or 2 and one line on stderr.
"""

import random
import signal
from contextlib import contextmanager

import numpy as np
import pytest

from hh_plugin.cli import main
from hh_plugin.export import FormatError, HHRecord, load

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fuzz_mutations import (CANARY, canary_files, mutate_bytes, mutate_structure,  # noqa: E402
                            seed_files, write_bytes_variant)

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    files = seed_files(d / "seeds")
    return d, [(p.name, p.read_bytes()) for p in files], canary_files(d)


@contextmanager
def deadline(seconds):
    def expired(signum, frame):
        raise AssertionError(f"no result within {seconds} s (hang)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _check_outcome(path, **options):
    try:
        record = load(path, **options)
    except FormatError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith(str(path)), text
        return None
    assert isinstance(record, HHRecord)
    for array in _arrays(record):
        if array.dtype.kind == "f":
            assert not np.any(array == CANARY), "data from outside the file came back"
    return record


def _arrays(record):
    yield from (np.asarray(v) for v in record.spec.parameters.values())
    for group in (record.state, record.traces):
        yield from (group or {}).values()
    if record.input is not None:
        yield record.input


@settings(max_examples=200, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), which=st.integers(0, 3))
def test_damaged_files(corpus, tmp_path, seed, which):
    """Byte damage: refused by the checksum before HDF5 parses anything."""
    d, files, _ = corpus
    name, data = files[which]
    damaged = mutate_bytes(data, random.Random(seed))
    path = tmp_path / f"{seed}-{name}"
    write_bytes_variant(path, damaged, "damaged")
    with deadline(120):
        record = _check_outcome(path, timeout=60)
    if record is not None and damaged != data:
        # only damage to the user block (which HDF5 never reads) can pass: the file then
        # counts as one without a checksum and is read in the child process
        assert damaged[512:] == data[512:]


@settings(max_examples=200, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), which=st.integers(0, 3))
def test_crafted_structures(corpus, tmp_path, seed, which):
    """Members, storage, types, shapes, values, attributes and metadata changed with h5py
    and given a valid checksum: refused (or read) by the reader's own checks, in-process."""
    d, files, canaries = corpus
    name, data = files[which]
    path = tmp_path / f"{seed}-{name}"
    path.write_bytes(data)
    mutate_structure(path, random.Random(seed), canaries)
    with deadline(60):
        _check_outcome(path, isolate=False)


@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), which=st.integers(0, 3),
       variant=st.sampled_from(["crafted", "plain"]))
def test_crafted_bytes_in_a_child(corpus, tmp_path, seed, which, variant):
    """Byte damage behind a valid checksum, or with no checksum: parsed by HDF5 in the
    isolated reader, whose limits end any hang or crash."""
    d, files, _ = corpus
    name, data = files[which]
    path = tmp_path / f"{seed}-{name}"
    write_bytes_variant(path, mutate_bytes(data, random.Random(seed)), variant)
    with deadline(120):
        _check_outcome(path, isolate=True, timeout=20)


@settings(max_examples=20, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), which=st.integers(0, 3),
       family=st.sampled_from(["bytes", "structure"]))
def test_inspect_command(corpus, tmp_path, capsys, seed, which, family):
    d, files, canaries = corpus
    name, data = files[which]
    path = tmp_path / f"{seed}-{name}"
    rng = random.Random(seed)
    if family == "bytes":
        write_bytes_variant(path, mutate_bytes(data, rng), rng.choice(["damaged", "crafted"]))
    else:
        path.write_bytes(data)
        mutate_structure(path, rng, canaries)
    with deadline(120):
        status = main(["inspect", str(path)])
    out, err = capsys.readouterr()
    assert status in (0, 2), err
    if status == 2:
        assert err.count("\n") == 1 and err.startswith("hh-plugin inspect: error:"), err
    assert "Traceback" not in err and f"{CANARY:g}" not in out
