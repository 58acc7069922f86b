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


# ---------------------------------------------------------------- model definitions (issue 20)
_NUMBERS = st.one_of(st.integers(-10 ** 40, 10 ** 40), st.sampled_from(
    [0, 1, 2, 3, 10, 30, 64, 65, 100, 10 ** 15, 10 ** 16, 2 ** 64, 10 ** 30]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.5, 1e-300, 1e308]))
_NAMES = st.sampled_from(["V", "g", "C", "k", "Ｖ", "𝐕", "exp"])


def _expressions():
    """Expression texts from the model grammar with hostile numbers, names and nesting:
    what a crafted file can carry."""
    leaf = st.one_of(_NUMBERS.map(lambda n: f"({n!r})"), _NAMES)

    def extend(inner):
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(
            lambda t: f"({t[0]}{t[1]}{t[2]})")
        call = st.tuples(st.sampled_from(["exp", "log", "sqrt", "tanh", "cosh", "exprel"]),
                         inner).map(lambda t: f"{t[0]}({t[1]})")
        return st.one_of(binary, call, inner.map(lambda e: f"-{e}"))
    return st.recursive(leaf, extend, max_leaves=12)


@settings(max_examples=300, **SETTINGS)
@given(text=_expressions())
def test_hostile_expressions_are_built_or_refused_with_a_value_error(text):
    """Whatever the expression: a model is built (its rate finite over -100..60 mV) or a
    ValueError names the expression; never another exception, a hang or a complex rate."""
    from hh_plugin.model import (ChannelDefinition, GateDefinition, ModelDefinition,
                                 ParameterDefinition as P)
    from hh_plugin.model.expressions import parse

    with deadline(60):
        try:
            parse(text, ["V", "g", "C"])
        except ValueError as exc:
            assert "model expression" in str(exc) or "longer than" in str(exc)
        try:
            model = ModelDefinition(
                "fuzz_model", (P("g", 1.0, "mS"), P("E", 0.0, "mV"), P("V_th", 0.0, "mV"),
                               P("C", 1.0, "uF")),
                (GateDefinition("x", alpha=text, beta="0.1"),),
                (ChannelDefinition("X", "g*x", "E"),))
        except ValueError:
            return
    fn, args = model.compiled("numpy").intermediates["x"]["alpha"]
    V = np.linspace(-100, 60, 161)
    values = np.broadcast_to(fn(*(V if a == "V" else model.defaults[a] for a in args)),
                             V.shape)
    assert not np.iscomplexobj(values) and np.all(np.isfinite(values))


# ---------------------------------------------------------------- network files (issue 20)
@pytest.fixture(scope="module")
def network_seed(tmp_path_factory):
    from fuzz_mutations import network_seed_file

    return network_seed_file(tmp_path_factory.mktemp("netfuzz")).read_bytes()


@settings(max_examples=80, **SETTINGS)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["network", "definition"]))
def test_crafted_network_files_load_or_are_refused_within_their_memory_limit(
        network_seed, tmp_path, seed, family):
    """Sizes, delays, step counts, declared datasets and JSON of a network file, or its
    models' rates and names, changed with h5py and restamped (``fuzz_mutations``): read in
    this process (the harsher case), the result is a record or a one-line FormatError, and
    the memory traced stays within 4 times the limit given (16 MiB)."""
    import tracemalloc

    from fuzz_mutations import mutate_definition, mutate_network

    from hh_plugin.export import load_network

    path = tmp_path / "net.h5"
    path.write_bytes(network_seed)
    ops = (mutate_network if family == "network" else mutate_definition)(
        path, random.Random(seed))
    tracemalloc.start()
    try:
        with deadline(60):
            try:
                load_network(path, trusted=True, max_bytes=16 << 20)
            except FormatError as exc:
                text = str(exc)
                assert "\n" not in text and text.startswith(str(path)), text
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, (ops, peak)
