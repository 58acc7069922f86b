"""Format 1.0: save/load round trips, adapters, continuation across backends, crosscheck,
and every bad-file case (one-line FormatError)."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hh_plugin import HHSpec, initial_state
from hh_plugin.export import FormatError, HHRecord, load, save
from hh_plugin.export.case import make_case
from hh_plugin.export import write_checksum
from hh_plugin.export.crosscheck import Tolerances, compare
from hh_plugin.export.report import plot, table
from hh_plugin.export.runner import run_case
from hh_plugin.export.schema import SCHEMA, validate
from hh_plugin.export.torch_adapter import (parameters_from_record, save_torch,
                                            state_from_record)
from hh_plugin.torch import HH, HHParameters

pytest.importorskip("hh_plugin.brian2")
import brian2  # noqa: E402

from hh_plugin.export import brian2_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _state(shape=(7,), dtype=np.float64, seed=1):
    return {k: v.astype(dtype) for k, v in initial_state(HHSpec().model, shape, seed=seed).items()}


def _valid_file(path, n=5, dtype=np.float64):
    spec = HHSpec(gNa=np.linspace(100, 120, n))
    T = 4
    save(path, spec, _state((n,), dtype), time=2.0, dt=0.01,
         input=np.ones((T, n), dtype),
         traces={"time": 2.0 + 0.01 * np.arange(1, T + 1), "V": np.zeros((T, n), dtype),
                 "spikes": np.zeros((T, n), np.uint8)})
    return spec


def _mutate(path, fn):
    """Change a file with h5py and re-stamp its checksum: a crafted file, not a damaged one."""
    with h5py.File(path, "r+") as f:
        fn(f)
    write_checksum(path)


def _metadata(f):
    return json.loads(f.attrs["metadata"])


def _set_metadata(f, meta):
    f.attrs["metadata"] = json.dumps(meta)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (2, 3, 6)])
def test_round_trip_bit_exact(tmp_path, dtype, shape):
    rng = np.random.default_rng(0)
    spec = HHSpec(gL=rng.uniform(0.01, 0.05, shape[-1]), V_reset=-70.0, spk_reset="hard",
                  alpha=0.5)
    state = {k: v + rng.normal(0, 1e-3, v.shape).astype(dtype)
             for k, v in _state(shape, dtype).items()}
    T = 5
    traces = {"time": 3.0 + 0.1 * np.arange(1, T + 1),
              "V": rng.normal(size=(T,) + shape).astype(dtype),
              **{k: rng.random(size=(T,) + shape).astype(dtype) for k in "mhn"},
              "spikes": (rng.random((T,) + shape) < 0.2).astype(np.uint8)}
    current = rng.normal(size=(T,) + shape).astype(dtype)
    path = save(tmp_path / "f.h5", spec, state, time=3.0, dt=0.1, input=current,
                traces=traces, backend="torch", provenance={"notes": "x"})
    r = load(path)
    assert r.spec == spec and r.dt == 0.1 and r.time == 3.0 and r.input_t_start == 3.0
    assert r.shape == shape and r.dtype == dtype and r.n_steps == T
    for k in state:
        assert r.state[k].dtype == dtype and np.array_equal(r.state[k], state[k])
    for k in traces:
        assert r.traces[k].dtype == traces[k].dtype
        assert np.array_equal(r.traces[k], traces[k])
    assert r.input.dtype == dtype and np.array_equal(r.input, current)
    assert r.provenance["backend"] == "torch" and r.provenance["notes"] == "x"
    assert r.provenance["versions"]["hh_plugin"]
    # the record re-saves losslessly
    r.save(tmp_path / "g.h5")
    r2 = load(tmp_path / "g.h5")
    assert r2.spec == spec and np.array_equal(r2.state["V"], state["V"])


def test_spec_only_file(tmp_path):
    save(tmp_path / "s.h5", HHSpec(C=2.0))
    r = load(tmp_path / "s.h5")
    assert r.spec == HHSpec(C=2.0) and r.state is None and r.dt is None and r.shape is None


def test_schema_file_matches_and_is_valid_json_schema(tmp_path):
    stored = json.loads((ROOT / "export/schema/hh_plugin_file-1.0.schema.json").read_text())
    assert stored == SCHEMA
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    _valid_file(tmp_path / "f.h5")
    with h5py.File(tmp_path / "f.h5") as f:
        meta = _metadata(f)
    jsonschema.validate(meta, SCHEMA)
    assert validate(meta) == []
    for bad in ({**meta, "extra": 1}, {k: v for k, v in meta.items() if k != "spec"},
                {**meta, "spec": {**meta["spec"], "dt": {"value": -1, "unit": "ms"}}},
                {**meta, "spec": {**meta["spec"], "reset_rule": "bounce"}}):
        assert validate(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


# ----------------------------------------------------------------------------- robustness
def test_no_overwrite_unless_asked(tmp_path):
    path = tmp_path / "f.h5"
    save(path, HHSpec())
    with pytest.raises(FileExistsError, match="exists"):
        save(path, HHSpec(C=2.0))
    assert load(path).spec == HHSpec()
    save(path, HHSpec(C=2.0), overwrite=True)
    assert load(path).spec == HHSpec(C=2.0)


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    from hh_plugin.export.container import hdf5

    path = tmp_path / "f.h5"
    _valid_file(path)
    before = path.read_bytes()
    real_write = hdf5.write

    def broken(target, metadata, arrays, compression, check):
        real_write(target, metadata, dict(list(arrays.items())[:2]), compression, check)
        raise KeyboardInterrupt  # interrupted half-way

    monkeypatch.setattr(hdf5, "write", broken)
    with pytest.raises(KeyboardInterrupt):
        save(path, HHSpec(C=3.0), _state((5,)), overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "new.h5", HHSpec())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]  # no temp, no half file


def test_save_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        save(tmp_path / "a.h5", HHSpec(), {**_state(), "V": np.full(7, np.nan)})
    with pytest.raises(ValueError, match="exactly"):
        save(tmp_path / "a.h5", HHSpec(), {"V": np.zeros(7)})
    with pytest.raises(ValueError, match="input has shape"):
        save(tmp_path / "a.h5", HHSpec(), _state(), input=np.zeros((3, 8)))
    with pytest.raises(ValueError, match="neurons"):
        save(tmp_path / "a.h5", HHSpec(gL=np.ones(3)), _state())
    with pytest.raises(ValueError, match="dt"):
        save(tmp_path / "a.h5", HHSpec(), dt=0.0)
    assert not list(tmp_path.iterdir())


BAD_FILES = {
    "newer version": (lambda f: f.attrs.__setitem__("format_version", "2.0"), "newer"),
    "newer minor": (lambda f: f.attrs.__setitem__("format_version", "1.3"), "newer"),
    "1.0 content labelled 1.1": (lambda f: f.attrs.__setitem__("format_version", "1.1"),
                                 "metadata format_version '1.0' differs from the root "
                                 "attribute '1.1'"),
    "other format": (lambda f: f.attrs.__setitem__("format", "nir"), "not an hh_plugin"),
    "no format attr": (lambda f: f.attrs.__delitem__("format"), "not an hh_plugin"),
    "metadata not json": (lambda f: f.attrs.__setitem__("metadata", "{oops"), "not valid JSON"),
    "metadata missing field": (
        lambda f: _set_metadata(f, {k: v for k, v in _metadata(f).items()
                                    if k != "provenance"}), "missing the field 'provenance'"),
    "metadata extra field": (
        lambda f: _set_metadata(f, {**_metadata(f), "color": "red"}), "unexpected field"),
    "missing dataset": (lambda f: f.__delitem__("state/h"), "missing field /state/h"),
    "missing parameter": (lambda f: f.__delitem__("spec/parameters/gL"),
                          "missing field /spec/parameters/gL"),
    "extra dataset": (lambda f: f.create_dataset("state/x", data=np.zeros(5)),
                      "unexpected field /state/x"),
    "extra group": (lambda f: f.create_group("weights"), "unexpected field /weights"),
    "wrong state shape": (lambda f: (f.__delitem__("state/m"),
                                     f.create_dataset("state/m", data=np.zeros(6)),
                                     f["state/m"].attrs.__setitem__("unit", "1")),
                          r"/state/m has shape \(6,\), expected \(5,\)"),
    "wrong trace shape": (lambda f: (f.__delitem__("traces/V"),
                                     f.create_dataset("traces/V", data=np.zeros((3, 5))),
                                     f["traces/V"].attrs.__setitem__("unit", "mV")),
                          r"/traces/V has shape \(3, 5\), expected \(4, 5\)"),
    "wrong parameter length": (lambda f: (f.__delitem__("spec/parameters/gNa"),
                                          f.create_dataset("spec/parameters/gNa",
                                                           data=np.ones(4)),
                                          f["spec/parameters/gNa"].attrs.__setitem__("unit",
                                                                                     "mS")),
                               "gNa has shape"),
    "nan state": (lambda f: f["state/V"].__setitem__(3, np.nan), "/state/V contains NaN"),
    "inf input": (lambda f: f["input/I"].__setitem__((1, 2), np.inf), "/input/I contains NaN"),
    "nan parameter": (lambda f: f["spec/parameters/gNa"].__setitem__(0, np.nan), "NaN"),
    "unit mismatch": (lambda f: f["state/V"].attrs.__setitem__("unit", "uA"), "unit mismatch"),
    "unknown unit": (lambda f: f["input/I"].attrs.__setitem__("unit", "furlong"),
                     "unknown unit 'furlong'"),
    "no unit": (lambda f: f["state/n"].attrs.__delitem__("unit"), "no 'unit' attribute"),
    "bad dtype": (lambda f: (f.__delitem__("state/m"),
                             f.create_dataset("state/m", data=np.zeros(5, np.int32)),
                             f["state/m"].attrs.__setitem__("unit", "1")), "dtype int32"),
    "bad spikes": (lambda f: f["traces/spikes"].__setitem__((0, 0), 2), "only 0 and 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_one_line_error(tmp_path, case):
    path = tmp_path / "f.h5"
    _valid_file(path)
    mutate, message = BAD_FILES[case]
    _mutate(path, mutate)
    with pytest.raises(FormatError, match=message) as info:
        load(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path))


def test_truncated_and_non_hdf5_files(tmp_path):
    path = tmp_path / "f.h5"
    _valid_file(path)
    data = path.read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        load(tmp_path / "t.h5")
    (tmp_path / "x.h5").write_text("V,m,h,n\n-65,0.05,0.6,0.3\n")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        load(tmp_path / "x.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        load(tmp_path / "empty.h5")
    with pytest.raises(FormatError, match="no such file"):
        load(tmp_path / "missing.h5")


def test_known_units_are_converted(tmp_path):
    path = tmp_path / "f.h5"
    _valid_file(path)
    original = load(path)

    def to_si(f):
        f["state/V"][...] = f["state/V"][()] * 1e-3
        f["state/V"].attrs["unit"] = "V"
        f["input/I"][...] = f["input/I"][()] * 1e3
        f["input/I"].attrs["unit"] = "nA"
        f["spec/parameters/gNa"][...] = f["spec/parameters/gNa"][()] * 1e-3
        f["spec/parameters/gNa"].attrs["unit"] = "S"
        meta = _metadata(f)
        meta["spec"]["dt"] = {"value": 1e-5, "unit": "s"}
        _set_metadata(f, meta)

    _mutate(path, to_si)
    r = load(path)
    np.testing.assert_allclose(r.state["V"], original.state["V"], rtol=1e-14)
    np.testing.assert_allclose(r.input, original.input, rtol=1e-14)
    np.testing.assert_allclose(r.spec.gNa, original.spec.gNa, rtol=1e-14)
    assert r.dt == pytest.approx(0.01, rel=1e-14)


# ----------------------------------------------------------------------------- torch adapter
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_state_and_parameters_round_trip(tmp_path, dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        p = HHParameters.from_spec(HHSpec(gK=torch.linspace(30, 40, 4).tolist()), dtype=dtype,
                                   device=device)
        module = HH(p=p, dt=1e-5, V_init="default", seed=3)
        _, state = module(torch.full((20, 2, 4), 8.0, dtype=dtype, device=device))
        path = tmp_path / f"{device}_{dtype}.h5"
        save_torch(path, p, state, dt=1e-5, time=0.2)
        r = load(path)
        assert r.dt == pytest.approx(0.01) and r.provenance["device"].startswith(device)
        back = state_from_record(r, device=device)
        for a, b in zip(state, back):
            assert b.dtype == dtype and b.device == a.device and torch.equal(a, b)
        p2 = parameters_from_record(r, dtype=dtype, device=device)
        for name in HHSpec().model.parameter_names:
            assert torch.equal(getattr(p, name), getattr(p2, name))
        assert p2.to_spec() == p.to_spec()


# ----------------------------------------------------------------------------- continuation
def _straight(case):
    return run_case(case, "torch"), run_case(case, "brian2")


@pytest.fixture(scope="module")
def short_case():
    spec = HHSpec(gL=np.random.default_rng(5).uniform(0.02, 0.04, 40))
    case = make_case(40, duration=15.0, dt=0.01, seed=2, spec=spec)
    torch_run, brian_run = _straight(case)
    # split where some neuron is above threshold (mid-spike): the hardest place to resume
    above = np.flatnonzero((torch_run.traces["V"] >= 20.0).any(1))
    split = int(above[len(above) // 2])
    return case, torch_run, brian_run, split


def test_torch_to_brian2_continuation(tmp_path, short_case):
    case, torch_run, brian_run, k = short_case
    # torch runs k+1 steps, saves its state (t = (k+1) dt), Brian2 loads it and runs on
    first = run_case(HHRecord(spec=case.spec, dt=case.dt, state=case.state, time=0.0,
                              input=case.input[:k + 1], input_t_start=0.0), "torch")
    assert (first.state["V"] >= 20.0).any()
    first.save(tmp_path / "mid.h5")
    mid = load(tmp_path / "mid.h5")
    assert mid.backend == "torch" and mid.time == pytest.approx((k + 1) * case.dt)
    group = brian2_adapter.group_from_record(mid, current="I_cont(t, i)", namespace={
        "I_cont": brian2.TimedArray(case.input[k + 1:] * brian2.uA, dt=case.dt * brian2.ms)})
    sm = brian2.StateMonitor(group, ["V", "m", "h", "n"], record=True, when="end")
    sp = brian2.SpikeMonitor(group)
    rest = len(case.input) - (k + 1)
    brian2.Network(group, sm, sp).run(rest * case.dt * brian2.ms)
    traces = brian2_adapter.traces_from_monitors(sm, sp, dt=case.dt, n_steps=rest,
                                                 t_start=mid.time)
    for reference in (torch_run, brian_run):
        for name in "Vmhn":
            err = np.abs(traces[name] - reference.traces[name][k + 1:]).max()
            assert err < (1e-9 if name == "V" else 1e-11), (name, err)
        assert np.array_equal(traces["spikes"], reference.traces["spikes"][k + 1:])
        np.testing.assert_allclose(traces["time"], reference.traces["time"][k + 1:],
                                   rtol=1e-12)
    assert traces["spikes"].sum() > 0


def test_brian2_to_torch_continuation(tmp_path, short_case):
    case, torch_run, brian_run, k = short_case
    first = run_case(HHRecord(spec=case.spec, dt=case.dt, state=case.state, time=0.0,
                              input=case.input[:k + 1], input_t_start=0.0), "brian2")
    first.save(tmp_path / "mid.h5")
    mid = load(tmp_path / "mid.h5")
    assert mid.backend == "brian2"
    state = state_from_record(mid)
    module = HH(p=parameters_from_record(mid), dt=mid.dt * 1e-3, record_states=True)
    with torch.no_grad():
        spikes, states = module(torch.from_numpy(case.input[k + 1:]), state)
    for reference in (torch_run, brian_run):
        err = np.abs(states.V.numpy() - reference.traces["V"][k + 1:]).max()
        assert err < 1e-9, err
        assert np.array_equal(spikes.numpy().astype(np.uint8),
                              reference.traces["spikes"][k + 1:])


def test_brian2_group_state_round_trip(tmp_path):
    from hh_plugin.brian2 import neuron_group

    spec = HHSpec(gNa=np.linspace(110, 130, 6))
    group = neuron_group(6, spec, current=10 * brian2.uA, seed=4, dt=0.01 * brian2.ms)
    net = brian2.Network(group)
    net.run(1 * brian2.ms)
    brian2_adapter.save_group(tmp_path / "g.h5", group, spec, time=1.0)
    r = load(tmp_path / "g.h5")
    assert r.backend == "brian2" and r.dt == pytest.approx(0.01) and r.spec == spec
    np.testing.assert_array_equal(r.state["V"], group.V_[:] / 1e-3)
    other = brian2_adapter.group_from_record(r)
    for name in "mhn":
        np.testing.assert_array_equal(getattr(other, name + "_")[:],
                                      getattr(group, name + "_")[:])
    # V travels in mV (volt/1e-3*1e-3): exact up to the last bit
    np.testing.assert_allclose(other.V_[:], group.V_[:], rtol=2.3e-16, atol=0)


# ----------------------------------------------------------------------------- crosscheck
@pytest.fixture(scope="module")
def big_runs(tmp_path_factory):
    """1,000 neurons, random heterogeneous input, 20 ms at dt = 0.01 ms, both backends."""
    d = tmp_path_factory.mktemp("big")
    case = make_case(1000, duration=20.0, dt=0.01, seed=0)
    case.save(d / "case.h5")
    case = load(d / "case.h5")
    a = run_case(case, "torch")
    b = run_case(case, "brian2")
    a.save(d / "torch.h5")
    b.save(d / "brian2.h5")
    return d, case, load(d / "torch.h5"), load(d / "brian2.h5")


def test_crosscheck_passes_on_both_backends(big_runs):
    d, case, a, b = big_runs
    result = compare(a, b)
    assert result.tolerances == Tolerances.for_dtype(np.float64)
    assert result.passed, table(result)
    assert result.max_dV.max() < 1e-8
    assert result.spikes_a.sum() > 500 and np.array_equal(result.spikes_a, result.spikes_b)
    text = table(result, backends=(a.backend, b.backend))
    assert "PASS" in text and "first divergence: none" in text
    plot(result, a, b, d / "ok.png")
    assert (d / "ok.png").stat().st_size > 1000


def test_crosscheck_names_the_perturbed_neuron(big_runs):
    d, case, a, _ = big_runs
    gNa = np.array(case.spec.gNa, dtype=float)  # make_case draws gNa per neuron
    before = float(gNa[417])
    gNa[417] += 0.5
    perturbed = HHRecord(spec=case.spec.replace(gNa=gNa), dt=case.dt, state=case.state,
                         time=case.time, input=case.input, input_t_start=case.input_t_start)
    b = run_case(perturbed, "brian2")
    b.save(d / "perturbed.h5")
    result = compare(a, load(d / "perturbed.h5"))
    assert not result.passed
    assert np.flatnonzero(result.failed).tolist() == [417]
    text = table(result)
    assert "FAIL: 1 of 1000" in text and "worst: neuron 417" in text
    assert f"gNa: neuron 417: {before!r} vs {before + 0.5!r}" in text
    assert "first divergence: step" in text and "neuron(s) 417" in text


def test_crosscheck_float32_defaults(big_runs):
    _, case, _, b = big_runs
    a32 = run_case(case, "torch", dtype=torch.float32)
    result = compare(a32, b)
    assert result.dtype == np.float32 and result.tolerances == Tolerances(0.5, 1e-3, 1)
    assert result.passed, table(result)
    assert not compare(a32, b, atol_V=1e-6).passed
