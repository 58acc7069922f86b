"""Mutations of valid hh_plugin files, shared by the fuzz tests (``test_fuzz.py``) and the
long fuzz run (``fuzz_reader.py``).

Two families:

- **byte mutations** (what a broken disk or transfer does, and what a crafted file can do
  to the HDF5 structures themselves): flip, set, zero, insert, delete or duplicate bytes,
  truncate. Applied to the whole file, optionally followed by a fresh checksum (a crafted
  file) or by removing the user block (a file without a checksum).
- **structural mutations** (what an attacker writes with h5py): members removed, added,
  replaced by other types, shapes, storage (external files, virtual datasets, links to a
  canary file), filters, values and attributes, metadata JSON edited. Always followed by
  a fresh checksum, so they reach the reader's HDF5-level checks.

Every mutation takes a ``random.Random`` so that a run is reproducible from its seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import h5py
import numpy as np

from hh_plugin import HHSpec
from hh_plugin.export import save
from hh_plugin.export.case import make_case
from hh_plugin.export.container.checksum import USERBLOCK_SIZE, write_checksum

#: Value a canary dataset/file holds: if it ever shows up in a reader's output, the reader
#: read outside the file it was given.
CANARY = 4242.4242


def seed_files(directory: Path) -> list:
    """A handful of small valid files covering the format's variants."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    case = make_case(12, duration=1.0, dt=0.01, seed=1)
    case.save(directory / "case.h5", overwrite=True)
    files.append(directory / "case.h5")
    make_case(5, duration=0.5, dt=0.01, seed=2, dtype="float32").save(
        directory / "case32.h5", overwrite=True)
    files.append(directory / "case32.h5")
    rng = np.random.default_rng(3)
    T, S = 20, (2, 6)
    traces = {"time": 0.01 * np.arange(1, T + 1), "V": rng.normal(-65, 5, (T,) + S),
              "m": rng.random((T,) + S), "h": rng.random((T,) + S), "n": rng.random((T,) + S),
              "spikes": (rng.random((T,) + S) < 0.1).astype(np.uint8)}
    state = {k: v[-1] for k, v in traces.items() if k in "Vmhn"}
    save(directory / "result.h5", HHSpec(gL=rng.uniform(0.02, 0.04, 6), V_reset=-70.0,
                                         spk_reset="hard"),
         state, time=0.2, dt=0.01, traces=traces, backend="torch", overwrite=True,
         compression="gzip")
    files.append(directory / "result.h5")
    save(directory / "spec.h5", HHSpec(C=2.0), overwrite=True)
    files.append(directory / "spec.h5")
    return files


def canary_files(directory: Path):
    """A raw file and an HDF5 file full of :data:`CANARY` values, and a FIFO."""
    directory = Path(directory)
    raw = directory / "canary.bin"
    np.full(4096, CANARY).tofile(raw)
    h5 = directory / "canary.h5"
    with h5py.File(h5, "w") as f:
        f["data"] = np.full((64, 64), CANARY)
    fifo = directory / "canary.fifo"
    if not fifo.exists():
        import os

        os.mkfifo(fifo)
    return raw, h5, fifo


# ------------------------------------------------------------------ bytes
def mutate_bytes(data: bytes, rng: random.Random, count: int = None) -> bytes:
    """1-4 random byte-level changes."""
    data = bytearray(data)
    for _ in range(count or rng.randint(1, 4)):
        if not data:
            break
        op = rng.choice(("flip", "set", "zero", "insert", "delete", "duplicate", "truncate",
                         "flip", "set", "zero"))
        i = rng.randrange(len(data))
        if op == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif op == "set":
            data[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == "zero":
            n = rng.randint(1, 16)
            data[i:i + n] = bytes(len(data[i:i + n]))
        elif op == "insert":
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == "delete":
            del data[i:i + rng.randint(1, 8)]
        elif op == "duplicate":
            n = rng.randint(1, 64)
            data[i:i] = data[i:i + n]
        elif op == "truncate" and i > 0:
            del data[i:]
    return bytes(data)


def write_bytes_variant(path: Path, data: bytes, variant: str) -> None:
    """``'damaged'``: as is; ``'crafted'``: with a fresh checksum; ``'plain'``: without the
    user block (no checksum)."""
    if variant == "plain":
        data = data[USERBLOCK_SIZE:] if len(data) > USERBLOCK_SIZE else data
    Path(path).write_bytes(data)
    if variant == "crafted":
        try:
            write_checksum(path)
        except (OSError, ValueError):
            pass  # the HDF5 signature is gone: the file stays as damaged


# ------------------------------------------------------------------ structure
def _datasets(f) -> list:
    out = []
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return out


def _groups(f) -> list:
    out = ["/"]
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Group) else None)
    return out


def _name(rng):
    return rng.choice(("V", "m", "x", "I", "time", "spikes", "parameters", "gNa", "evil",
                       "state", "..", "a b", "\u00e9", "n" * 200))


def _replace(f, where, rng, canaries, kind):
    unit = f[where].attrs.get("unit", "mV")
    shape = f[where].shape
    del f[where]
    raw, h5, fifo = canaries
    if kind == "external":
        target = rng.choice((raw, fifo, "/dev/zero", "/etc/hostname"))
        n = int(np.prod(shape or (1,)))
        f.create_dataset(where, shape=shape or (1,), dtype="<f8",
                         external=[(str(target), 0, n * 8 if target == raw else
                                    h5py.h5f.UNLIMITED)])
    elif kind == "virtual":
        layout = h5py.VirtualLayout(shape=(64, 64), dtype="<f8")
        layout[:] = h5py.VirtualSource(str(h5), "data", shape=(64, 64))
        f.create_virtual_dataset(where, layout)
    elif kind == "external_link":
        f[where] = h5py.ExternalLink(str(h5), "/data")
        return
    elif kind == "soft_link":
        f[where] = h5py.SoftLink(rng.choice(_datasets(f) or ["/nowhere"]))
        return
    elif kind == "dtype":
        dtype = rng.choice(("i1", "u1", "i8", "f2", ">f4", ">f8", "S8", "?", "c16"))
        f.create_dataset(where, data=np.zeros(shape or (), dtype=dtype))
    elif kind == "compound":
        f.create_dataset(where, data=np.zeros(shape or (), dtype=[("a", "f8"), ("b", "i4")]))
    elif kind == "shape":
        new = tuple(rng.choice((0, 1, 2, 5, 12, 20)) for _ in range(rng.randint(0, 4)))
        f.create_dataset(where, data=np.zeros(new))
    elif kind == "declared":
        rows = rng.choice((10 ** 4, 10 ** 6, 10 ** 9, 10 ** 12))
        f.create_dataset(where, shape=(rows,) + tuple(shape[1:] if shape else ()),
                         dtype="<f8", chunks=True,
                         compression=rng.choice((None, "gzip")))
    elif kind == "filter":
        f.create_dataset(where, data=np.zeros(shape or (1,)), compression="lzf")
    elif kind == "fletcher":
        f.create_dataset(where, data=np.ones(shape or (1,)), fletcher32=True, chunks=True)
    elif kind == "null":
        f.create_dataset(where, shape=None, dtype="f8")
    elif kind == "group":
        f.create_group(where)
    else:
        raise ValueError(kind)
    if where in f and rng.random() < 0.9:
        f[where].attrs["unit"] = unit


def _mutate_json(value, rng, depth=0):
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        op = rng.random()
        if op < 0.2:
            del value[key]
        elif op < 0.3:
            value[_name(rng)] = _random_json(rng)
        else:
            value[key] = _mutate_json(value[key], rng, depth + 1)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        value[i] = _mutate_json(value[i], rng, depth + 1)
        return value
    return _random_json(rng)


def _random_json(rng):
    return rng.choice((None, True, 0, -1, 1e308, -1e-308, 2 ** 70, "", "ms", "mV", "s",
                       "hard", "none", "1.0", "9.9", "hodgkin_huxley", "wang_buzsaki",
                       [], ["V"], ["V", "V"], ["spikes", "zz"], {}, {"value": 1, "unit": "s"},
                       {"value": -5, "unit": "ms"}, "x" * 1000, [[[[]]]]))


def _set_metadata(f, rng):
    meta = json.loads(f.attrs["metadata"])
    meta = _mutate_json(meta, rng)
    text = json.dumps(meta)
    if rng.random() < 0.1:  # raw edits JSON cannot express
        text = text.replace(rng.choice(("0.01", "1.0", "0.0", "20", "null")),
                            rng.choice(("1e400", "NaN", "-Infinity", "9" * 400, "1e-400")), 1)
    f.attrs["metadata"] = text


def _values(f, where, rng):
    ds = f[where]
    if ds.dtype.kind not in "fiub" or ds.size == 0:
        return
    data = ds[()]
    flat = np.array(data, dtype=ds.dtype, ndmin=1).reshape(-1)
    i = rng.randrange(flat.size)
    flat[i] = rng.choice((np.nan, np.inf, -np.inf, 1e300, -1.0, 2.0, 0.0, 1e-300, 65504.0)) \
        if ds.dtype.kind == "f" else rng.choice((0, 1, 2, 255))
    ds[...] = flat.reshape(np.shape(data))


def _attribute(f, rng):
    target = f[rng.choice(_datasets(f) + _groups(f))]
    name = rng.choice(("unit", "unit", "format", "format_version", "metadata", _name(rng)))
    value = rng.choice(("mV", "uA", "V", "1", "", "furlong", b"mV", 3.0, np.arange(3),
                        np.array([b"a", b"b"]), "hh_plugin", "1.0", "2.0", "x" * 300))
    if rng.random() < 0.2 and name in target.attrs:
        del target.attrs[name]
    else:
        target.attrs[name] = value


STRUCTURAL = ("delete", "add_dataset", "add_group", "external", "virtual", "external_link",
              "soft_link", "dtype", "compound", "shape", "declared", "filter", "fletcher",
              "null", "group", "values", "values", "attribute", "attribute", "metadata",
              "metadata", "metadata", "named_type")


def mutate_structure(path: Path, rng: random.Random, canaries, count: int = None) -> str:
    """1-3 structural changes with h5py, then a fresh checksum. Returns their names."""
    done = []
    with h5py.File(path, "r+") as f:
        for _ in range(count or rng.randint(1, 3)):
            op = rng.choice(STRUCTURAL)
            datasets = _datasets(f)
            try:
                if op == "delete":
                    del f[rng.choice(datasets + _groups(f)[1:] or ["spec"])]
                elif op in ("add_dataset", "add_group", "named_type"):
                    group = f[rng.choice(_groups(f))]
                    name = _name(rng)
                    if name not in group:
                        if op == "add_dataset":
                            group[name] = np.zeros(rng.randint(0, 5))
                        elif op == "add_group":
                            group.create_group(name)
                        else:
                            group[name] = np.dtype("f8")
                elif op in ("values",) and datasets:
                    _values(f, rng.choice(datasets), rng)
                elif op == "attribute":
                    _attribute(f, rng)
                elif op == "metadata" and "metadata" in f.attrs:
                    _set_metadata(f, rng)
                elif datasets:
                    _replace(f, rng.choice(datasets), rng, canaries, op)
            except (ValueError, TypeError, KeyError, OSError, RuntimeError):
                continue  # h5py refused to write it: not a file an attacker could make here
            done.append(op)
    write_checksum(path)
    return "+".join(done) or "none"


# ----------------------------------------------------------- issue 20: networks, definitions
def network_seed_file(directory: Path) -> Path:
    """A small valid network file (format 1.1) with results: two HH models, sparse and
    dense projections with delays, current, Poisson and spike-train inputs."""
    from hh_plugin.export import save_network
    from hh_plugin.model import WANG_BUZSAKI
    from hh_plugin.network import (CurrentInput, Dense, NetworkSpec, PoissonInput, Population,
                                   Projection, Sparse, SpikeTrains, current_pulse,
                                   exponential_current)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = NetworkSpec(
        [Population("A", 5), Population("W", 3, HHSpec(model=WANG_BUZSAKI))],
        [Projection("A", "W", Sparse([0, 1, 2], [0, 1, 2], [1.0, 2.0, 3.0]), current_pulse(),
                    delay=2),
         Projection("W", "A", Dense(np.full((5, 3), 0.5)), exponential_current("x", 3.0),
                    delay=1),
         Projection("P", "A", Sparse([0, 1], [3, 4], [0.5, 0.5]), current_pulse("p"),
                    delay=0)],
        [CurrentInput("A", 2.0), PoissonInput("P", 4, 20.0, seed=1),
         SpikeTrains("S", 2, [1, 3], [0, 1])], dt=0.01)
    raster = {"A": np.zeros((4, 5)), "W": np.eye(4, 3)}
    return save_network(directory / "network.h5", spec, {"steps": 4, "spikes": raster,
                                                         "traces": {}}, overwrite=True)


#: Pieces of hostile model expressions: numbers, names (non-ASCII ones that Python folds
#: into V), operators and functions.
_HOSTILE_NUMBERS = ["0", "1", "-1", "2", "64", "65", "10**30", "2**64", "1e15", "1e16",
                    "1e308", "1e-300", "0.5", "(1/3)", "10**15"]
_HOSTILE_NAMES = ["V", "V", "V", "Ｖ", "𝐕", "k", "exp", "__import__"]


def hostile_expression(rng: random.Random, depth: int = 0) -> str:
    """A random expression of the model grammar with hostile numbers and names."""
    roll = rng.random()
    if depth >= 4 or roll < 0.3:
        return rng.choice(_HOSTILE_NUMBERS + _HOSTILE_NAMES)
    if roll < 0.75:
        op = rng.choice(["+", "-", "*", "/", "**", "**", "^"])
        return f"({hostile_expression(rng, depth + 1)}{op}{hostile_expression(rng, depth + 1)})"
    if roll < 0.95:
        name = rng.choice(["exp", "log", "sqrt", "tanh", "cosh", "exprel"])
        return f"{name}({hostile_expression(rng, depth + 1)})"
    return "*".join(rng.choice(["10**30", "10**15", "1e15", "V"])
                    for _ in range(rng.randint(2, 40)))


def _definitions(meta: dict) -> list:
    """The model definitions a file's metadata carries (format 1.0 or 1.1)."""
    if "spec" in meta and isinstance(meta["spec"], dict) and "definition" in meta["spec"]:
        return [meta["spec"]["definition"]]
    pops = meta.get("network", {}).get("populations", [])
    return [p["spec"]["definition"] for p in pops
            if isinstance(p, dict) and "definition" in p.get("spec", {})]


def mutate_definition(path: Path, rng: random.Random) -> str:
    """Replace an expression (a rate, a conductance) or a name of a carried model
    definition with a hostile one, then a fresh checksum. Returns what was changed."""
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        definition = rng.choice(_definitions(meta))
        if rng.random() < 0.8:
            gates = definition["gates"]
            fields = [(g, k) for g in gates for k in ("alpha", "beta", "x_inf", "tau")
                      if k in g] + [(c, "conductance") for c in definition["channels"]]
            item, key = rng.choice(fields)
            item[key] = hostile_expression(rng)
            done = f"expression {key}={item[key][:60]}"
        else:
            item = rng.choice(definition["parameters"] + definition["gates"])
            item["name"] = rng.choice(["Ｖ", "𝐕", "V", "gᴸ", "_x", "x y", "C", "I"])
            done = f"name {item['name']}"
        f.attrs["metadata"] = json.dumps(meta)
    write_checksum(path)
    return done


_NETWORK_SIZES = [0, -1, 1, 2 ** 27, 10 ** 8, 2 ** 52, 2 ** 62, 1.5, "5", None, True]


def mutate_network(path: Path, rng: random.Random) -> str:
    """One change an attacker with h5py makes to a network file: sizes of populations
    and sources, delays, the run's step count, a dataset declaring a huge compressed size
    it does not store, or a JSON edit of the network description; then a fresh checksum."""
    op = rng.choice(["population size", "source size", "delay", "steps", "declared",
                     "json"])
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        net = meta["network"]
        if op == "population size":
            rng.choice(net["populations"])["size"] = rng.choice(_NETWORK_SIZES)
        elif op == "source size":
            sources = [i for i in net["inputs"] if "size" in i]
            rng.choice(sources)["size"] = rng.choice(_NETWORK_SIZES)
        elif op in ("delay", "declared"):
            proj = rng.choice(net["projections"])
            ref = proj["delay" if op == "delay" else "weight"]["$array"]
            del f[f"arrays/{ref}"]
            if op == "delay":
                value = np.array(rng.choice([-1, 0, 10 ** 6, 10 ** 9, 2 ** 62]))
                f.create_dataset(f"arrays/{ref}", data=value).attrs["unit"] = "1"
            else:
                rows = rng.choice([10 ** 6, 4 * 10 ** 7, 2 ** 40])
                f.create_dataset(f"arrays/{ref}", shape=(rows,), dtype="f8", chunks=(4096,),
                                 compression="gzip").attrs["unit"] = "1"
        elif op == "steps":
            meta["results"]["steps"] = rng.choice(_NETWORK_SIZES + [2 ** 40])
        else:
            meta["network"] = _mutate_json(net, rng)
        f.attrs["metadata"] = json.dumps(meta)
    write_checksum(path)
    return op
