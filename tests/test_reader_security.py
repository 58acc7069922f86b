"""Issue 13, faults 1-5: a file from someone else can never read other files, hang, crash
the caller or exhaust memory, and every refusal is one clear line.

Files are changed with h5py and then re-stamped with a valid checksum (``_craft``): that is
what an attacker can do, so these files reach the HDF5-level checks. ``_damage`` changes
bytes without re-stamping: what a broken disk or transfer does.
"""

import json
import os
import signal
from contextlib import contextmanager

import h5py
import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.export import FormatError, load, save
from hh_plugin.export.case import make_case
from hh_plugin.export import write_checksum

N, T = 6, 8


@contextmanager
def deadline(seconds):
    """Fail (instead of hanging the test run) if the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise AssertionError(f"took longer than {seconds} s (hang)")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _case_file(path, neurons=N, steps=T):
    make_case(neurons, duration=steps * 0.01, dt=0.01, seed=3).save(path)
    return path


def _craft(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    write_checksum(path)


def _replace(f, where, **kwargs):
    unit = f[where].attrs["unit"]
    del f[where]
    if "layout" in kwargs:
        ds = f.create_virtual_dataset(where, kwargs["layout"])
    else:
        ds = f.create_dataset(where, **kwargs)
    ds.attrs["unit"] = unit


def _refused(path, match, **options):
    """Both readers (in this process and isolated) refuse ``path`` with one line."""
    for isolate in (False, True):
        with deadline(60), pytest.raises(FormatError, match=match) as info:
            load(path, isolate=isolate, **options)
        text = str(info.value)
        assert "\n" not in text and text.startswith(str(path)), text


# ------------------------------------------------------------------ fault 1: other files
@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_bytes(b"root:x:0:0:TOP SECRET\n" * 200)
    return path


def test_external_storage_is_refused_before_reading(tmp_path, secret):
    path = _case_file(tmp_path / "f.h5")
    _craft(path, lambda f: _replace(f, "input/I", shape=(T, N), dtype="<f8",
                                    external=[(str(secret), 0, T * N * 8)]))
    _refused(path, "/input/I uses HDF5 external storage")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero"])
def test_external_storage_on_a_pipe_or_device_neither_hangs_nor_reads(tmp_path, target):
    if target == "fifo":
        target = str(tmp_path / "pipe")
        os.mkfifo(target)
    path = _case_file(tmp_path / "f.h5")
    _craft(path, lambda f: _replace(f, "state/V", shape=(N,), dtype="<f8",
                                    external=[(target, 0, h5py.h5f.UNLIMITED)]))
    _refused(path, "/state/V uses HDF5 external storage")


def test_external_link_is_not_followed(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["V"] = np.zeros((T, N))
    path = tmp_path / "f.h5"
    make_case(N, duration=T * 0.01, seed=3).save(path)

    def link(f):
        del f["state/V"]
        f["state/V"] = h5py.ExternalLink(str(other), "/V")
    _craft(path, link)
    _refused(path, "/state/V is an external link to")


def test_soft_link_is_not_followed(tmp_path):
    path = _case_file(tmp_path / "f.h5")

    def link(f):
        del f["state/m"]
        f["state/m"] = h5py.SoftLink("/state/h")
    _craft(path, link)
    _refused(path, "/state/m is a SoftLink")


def test_virtual_dataset_is_refused(tmp_path, secret):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as g:
        g["I"] = np.full((T, N), 7.0)
    path = _case_file(tmp_path / "f.h5")
    layout = h5py.VirtualLayout(shape=(T, N), dtype="<f8")
    layout[:] = h5py.VirtualSource(str(other), "I", shape=(T, N))
    _craft(path, lambda f: _replace(f, "input/I", layout=layout))
    _refused(path, "/input/I is a virtual dataset")


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f.attrs.__setitem__("extra", "x"), "unexpected attribute 'extra'"),
    (lambda f: f["state/V"].attrs.__setitem__("note", "x"), "unexpected attribute 'note'"),
    (lambda f: f["state"].attrs.__setitem__("note", "x"), "unexpected attribute 'note'"),
    (lambda f: f.__setitem__("spec/parameters/x", np.dtype("f8")),
     "unexpected field /spec/parameters/x"),
    (lambda f: _replace(f, "input/I", data=np.ones((T, N)), compression="lzf"),
     "filter 32000"),
    (lambda f: _replace(f, "state/V", data=np.array([b"-65"] * N)), "string type"),
    (lambda f: _replace(f, "state/V", data=np.zeros(N, dtype=[("a", "f8")])),
     "compound type"),
    (lambda f: _replace(f, "state/V", shape=None, dtype="f8"), "null"),
    (lambda f: f["state/V"].attrs.__setitem__("unit", np.array([b"mV", b"mV"])),
     "must be a scalar string"),
    (lambda f: f["state/V"].attrs.__setitem__("unit", 3.0), "must be a string"),
    (lambda f: f["state/V"].attrs.__setitem__("unit", "m" * 1000), "over the limit"),
])
def test_members_and_attributes_the_format_does_not_define(tmp_path, mutate, match):
    path = _case_file(tmp_path / "f.h5")
    _craft(path, mutate)
    _refused(path, match)


# ------------------------------------------------------------ fault 2: hangs and crashes
def _damaged_near(tmp_path, marker: bytes, offset: int, length: int, restamp: bool):
    path = _case_file(tmp_path / "f.h5", neurons=20, steps=200)
    data = bytearray(path.read_bytes())
    i = data.find(marker)
    assert i > 0
    data[i + offset:i + offset + length] = bytes(length) if length > 1 else \
        bytes([data[i + offset] ^ 0xFF])
    path.write_bytes(bytes(data))
    if restamp:
        write_checksum(path)
    return path


def test_damaged_file_that_hangs_hdf5_is_refused_by_its_checksum(tmp_path):
    # zeroing 9 bytes before the 'uF' unit string made load() spin forever inside HDF5
    # (refused by the checksum, before HDF5 reads it; the deadline only guards against a
    # hang, generously, so that a loaded machine does not fail the test)
    path = _damaged_near(tmp_path, b"uF", -9, 9, restamp=False)
    with deadline(300), pytest.raises(FormatError, match="checksum mismatch"):
        load(path)


def test_crafted_file_that_hangs_hdf5_is_read_in_a_child_with_a_time_limit(tmp_path):
    # the same damage with a valid checksum (a crafted file): the isolated reader's time
    # limit ends the hang, whatever HDF5 does with it, and this process is unaffected
    path = _damaged_near(tmp_path, b"uF", -9, 9, restamp=True)
    with deadline(300), pytest.raises(FormatError):
        load(path, isolate=True, timeout=8)


@pytest.mark.parametrize("offset", range(14, 30))
def test_byte_changed_after_the_format_version_attribute(tmp_path, offset):
    # one such byte made load, inspect and run die with a segmentation fault
    damaged = _damaged_near(tmp_path, b"format_version", offset, 1, restamp=False)
    with pytest.raises(FormatError, match="checksum mismatch"):
        load(damaged)
    (tmp_path / "f.h5").unlink()
    crafted = _damaged_near(tmp_path, b"format_version", offset, 1, restamp=True)
    with deadline(60):
        try:
            record = load(crafted, isolate=True, timeout=20)
        except FormatError as exc:
            assert "\n" not in str(exc)
        else:
            assert record.shape == (20,)  # a byte HDF5 does not use


def test_truncated_file_without_checksum_is_read_in_a_child(tmp_path):
    path = _case_file(tmp_path / "f.h5", neurons=20, steps=200)
    data = path.read_bytes()[512:]  # no user block: an HDF5 file from another writer
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with deadline(60), pytest.raises(FormatError, match="truncated or corrupt"):
        load(tmp_path / "cut.h5")


def test_file_without_checksum_loads_in_a_child_by_default(tmp_path, monkeypatch):
    path = _case_file(tmp_path / "f.h5")
    with h5py.File(path, "r") as f:
        with h5py.File(tmp_path / "plain.h5", "w") as g:  # another writer: no user block
            for name, value in f.attrs.items():
                g.attrs[name] = value
            f.visititems(lambda name, obj: g.create_dataset(name, data=obj[()]).attrs
                         .__setitem__("unit", obj.attrs["unit"])
                         if isinstance(obj, h5py.Dataset) else None)
    from hh_plugin.export.container import sandbox

    calls = []
    real = sandbox.read_isolated
    monkeypatch.setattr(sandbox, "read_isolated",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    record = load(tmp_path / "plain.h5", trusted=True)
    assert calls and np.array_equal(record.input, load(path, trusted=True).input)
    assert load(tmp_path / "plain.h5", isolate=False).spec == record.spec
    assert len(calls) == 1


# -------------------------------------------------------------- fault 3: sizes before reads
def test_compressed_file_declaring_gigabytes_is_refused_without_allocating(tmp_path):
    # a 35 KB gzip file declaring 2.6 GB used 2.9 GB of memory for 15 s; larger
    # declarations ended in a raw MemoryError
    for rows, match in ((2_600_000_000 // 8 // N, "over the reader's limit"),
                        (10 ** 15, "over the reader's limit"),
                        (200_000_000 // 8 // N, "more expansion than deflate")):
        path = _case_file(tmp_path / f"f{rows}.h5")
        _craft(path, lambda f: _replace(f, "input/I", shape=(rows, N), dtype="<f8",
                                        chunks=(1000, N), compression="gzip"))
        assert path.stat().st_size < 100_000
        with deadline(300):  # refused from the declared sizes, before any allocation
            _refused(path, match)


def test_uncompressed_dataset_with_missing_storage_is_refused(tmp_path):
    path = _case_file(tmp_path / "f.h5")
    _craft(path, lambda f: _replace(f, "input/I", shape=(10_000, N), dtype="<f8",
                                    chunks=(100, N)))
    _refused(path, "stores only 0")


def test_limit_is_configurable(tmp_path, monkeypatch):
    from hh_plugin.export.container.limits import Limits

    path = _case_file(tmp_path / "f.h5", neurons=50, steps=100)
    with pytest.raises(FormatError, match="limit of 10000"):
        load(path, max_bytes=10_000)
    monkeypatch.setenv("HH_PLUGIN_MAX_READ_BYTES", "10000")
    with pytest.raises(FormatError, match="larger than the reader's limit|limit of 10000"):
        load(path)
    monkeypatch.setenv("HH_PLUGIN_MAX_READ_BYTES", "2e6")
    assert load(path).shape == (50,)
    assert Limits.default().max_bytes == 2_000_000


# ------------------------------------------------------------- fault 4: metadata values
def _set_metadata_text(f, text):
    f.attrs["metadata"] = text


@pytest.mark.parametrize("field, value", [
    ("dt", "1e400"), ("time", "1e400"), ("t_start", "-1e999"), ("dt", "1" + "0" * 400),
    ("time", "-" + "9" * 400), ("alpha", "123456789012345678901"),
])
def test_metadata_numbers_must_be_finite_and_in_range(tmp_path, field, value):
    path = _case_file(tmp_path / "f.h5")
    with h5py.File(path) as f:
        meta = json.loads(f.attrs["metadata"])
    target = {"dt": meta["spec"]["dt"], "time": meta["state"]["time"],
              "t_start": meta["input"]["t_start"], "alpha": meta["spec"]["surrogate"]}
    key = "alpha" if field == "alpha" else "value"
    target[field][key] = "@@"
    text = json.dumps(meta).replace('"@@"', value)
    _craft(path, lambda f: _set_metadata_text(f, text))
    _refused(path, "out of range")


@pytest.mark.parametrize("where, value", [("state/m", 1.5), ("state/h", -0.2),
                                          ("state/n", 7.0)])
def test_gate_values_outside_0_1_are_refused(tmp_path, where, value):
    path = _case_file(tmp_path / "f.h5")
    _craft(path, lambda f: f[where].__setitem__(0, value))
    _refused(path, f"/{where} has gate values outside")


def test_gate_values_in_traces_outside_0_1_are_refused(tmp_path):
    path = tmp_path / "r.h5"
    save(path, HHSpec(), traces={"time": [0.01, 0.02], "V": np.zeros((2, 3)),
                                 "m": np.full((2, 3), 0.5)})
    _craft(path, lambda f: f["traces/m"].__setitem__((1, 2), 1.01))
    _refused(path, "/traces/m has gate values outside")
    with pytest.raises(ValueError, match="outside"):
        save(tmp_path / "w.h5", HHSpec(), traces={"time": [0.01], "V": np.zeros((1, 3)),
                                                  "h": np.full((1, 3), -0.1)})


def test_deeply_nested_metadata(tmp_path):
    path = _case_file(tmp_path / "f.h5")
    _craft(path, lambda f: _set_metadata_text(f, "[" * 100_000 + "]" * 100_000))
    _refused(path, "metadata")


@pytest.mark.parametrize("fixed", [True, False])
def test_huge_metadata_attribute(tmp_path, fixed):
    path = tmp_path / "f.h5"
    text = "{" + " " * (2 << 20) + "}"
    with h5py.File(path, "w", libver="latest", userblock_size=512) as f:
        f.attrs["format"] = "hh_plugin"
        f.attrs["format_version"] = "1.0"
        f.attrs["metadata"] = np.array(text.encode(), dtype=f"S{len(text)}") if fixed else text
    write_checksum(path)
    _refused(path, "over the limit")


# ---------------------------------------------------------------- fault 5: clear messages
def test_spec_replaced_by_a_dataset(tmp_path):
    path = _case_file(tmp_path / "f.h5")

    def swap(f):
        del f["spec"]
        f["spec"] = np.zeros(3)
    _craft(path, swap)
    _refused(path, "/spec must be a group, found a dataset")


def test_directory_device_and_pipe_are_named(tmp_path):
    with pytest.raises(FormatError, match="is a directory, not a file"):
        load(tmp_path)
    with pytest.raises(FormatError, match="not a regular file"):
        load("/dev/null")
    os.mkfifo(tmp_path / "pipe")
    with deadline(10), pytest.raises(FormatError, match="not a regular file"):
        load(tmp_path / "pipe")
    with pytest.raises(FormatError, match="no such file"):
        load(tmp_path / "missing.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        load(tmp_path / "empty.h5")


def test_edited_file_needs_a_new_checksum(tmp_path):
    path = _case_file(tmp_path / "f.h5")
    with h5py.File(path, "r+") as f:  # a legitimate edit with another HDF5 tool
        f["state/V"][0] = -64.0
    with pytest.raises(FormatError, match="write_checksum"):
        load(path)
    assert load(path, verify=False).state["V"][0] == -64.0  # read in a child process
    write_checksum(path)
    assert load(path).state["V"][0] == -64.0
