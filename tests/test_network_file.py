"""Issue 12: networks in the portable file (format 1.1) and on the command line."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.export import FormatError, load, load_network, save, save_network
from hh_plugin.export import write_checksum
from hh_plugin.model import WANG_BUZSAKI
from hh_plugin.network import (CurrentInput, Dense, FixedProbability, NetworkSpec,
                               PoissonInput, Population, Projection, RandomDelay, Sparse,
                               SpikeTrains, current_pulse, exponential_conductance,
                               exponential_current)
from hh_plugin.network.leaky_integrator import LISpec
from hh_plugin.torch.network import NetworkModule

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300


def network():
    rng = np.random.default_rng(3)
    return NetworkSpec(
        [Population("E", 30, HHSpec(gL=rng.uniform(0.02, 0.04, 30)), seed=1),
         Population("W", 10, HHSpec(model=WANG_BUZSAKI), seed=2, refractory=1.0),
         Population("R", 4, LISpec(1000.0, 500.0, 0.0))],
        [Projection("E", "W", FixedProbability(0.3, 0.02, seed=4),
                    exponential_conductance("e", 2.0, 0.0), delay=RandomDelay(1, 5, 5)),
         Projection("W", "E", Dense(rng.uniform(0, 2, (30, 10))), exponential_current("x", 3.0),
                    delay=2),
         Projection("P", "E", Sparse([0, 1, 2], [3, 4, 5], [5.0, 6.0, 7.0]), current_pulse(),
                    delay=0),
         Projection("E", "R", Dense(rng.normal(0, 1, (4, 30))), current_pulse("p"), delay=0)],
        [CurrentInput("E", rng.uniform(5, 15, (STEPS, 30))), CurrentInput("W", 1.0),
         PoissonInput("P", 8, 80.0, seed=7), SpikeTrains("S", 2, [3, 10], [0, 1])],
        dt=0.05)


def run_torch(spec, steps=STEPS):
    with torch.no_grad():
        return NetworkModule(spec, dtype=torch.float64)(steps=steps, record=("V", "v"))


def test_network_round_trip_with_results(tmp_path):
    spec = network()
    out = run_torch(spec)
    path = save_network(tmp_path / "net.h5", spec, out, backend="torch")
    for isolate in (False, True):
        record = load_network(path, isolate=isolate)
        again = record.spec
        assert list(again.populations) == ["E", "W", "R"]
        for name, pop in spec.populations.items():
            for var, value in spec.initial_state(name).items():
                np.testing.assert_array_equal(again.initial_state(name)[var], value)
        np.testing.assert_array_equal(again.populations["E"].spec.parameters["gL"],
                                      spec.populations["E"].spec.parameters["gL"])
        assert again.populations["W"].refractory == 1.0
        assert again.populations["R"].spec == LISpec(1000.0, 500.0, 0.0)
        for proj in spec.projections:
            a, b = spec.connections[proj.name], again.connections[proj.name]
            np.testing.assert_array_equal(a.weight, b.weight)
            np.testing.assert_array_equal(a.delay, b.delay)
            assert again.projection(proj.name).synapse == proj.synapse
        assert record.backend == "torch" and record.steps == STEPS
        for pop in spec.populations:
            np.testing.assert_array_equal(record.raster(pop), out.spikes[pop].numpy())
        np.testing.assert_array_equal(record.traces["E"]["V"], out.traces["E"]["V"].numpy())
        # the same network: the reloaded specification runs to the same spikes
        np.testing.assert_array_equal(run_torch(again).spikes["E"].numpy(),
                                      out.spikes["E"].numpy())
    with pytest.raises(FormatError, match="load_network"):
        load(path)
    single = save(tmp_path / "single.h5", HHSpec(), dt=0.01)
    with pytest.raises(FormatError, match="single-population"):
        load_network(single)
    assert load(single).dt == 0.01  # format 1.0 files still load


def _rewrite(path, edit):
    """Change the metadata of a network file with h5py and give it a fresh checksum
    (an attacker's file, not a damaged one)."""
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        edit(meta, f)
        f.attrs["metadata"] = json.dumps(meta)
    write_checksum(path)


def _first_projection_array(meta, f, key):
    ref = meta["network"]["projections"][0][key]["$array"]
    return f"arrays/{ref}"


def _set_array(f, where, values):
    del f[where]
    f.create_dataset(where, data=values).attrs["unit"] = "1"


HOSTILE = {
    "out-of-range index": (lambda m, f: _set_array(
        f, _first_projection_array(m, f, "post"), np.full(
            f[_first_projection_array(m, f, "post")].shape, 10_000)), "index|range|outside"),
    "NaN weight": (lambda m, f: _set_array(
        f, _first_projection_array(m, f, "weight"), np.full(
            f[_first_projection_array(m, f, "weight")].shape, np.nan)), "NaN"),
    "negative delay": (lambda m, f: _set_array(
        f, _first_projection_array(m, f, "delay"), -np.ones(
            f[_first_projection_array(m, f, "delay")].shape, dtype=np.int64)), "delay"),
    "wrong shape": (lambda m, f: _set_array(
        f, _first_projection_array(m, f, "weight"), np.ones(2)), "shape|length|same"),
    "unknown synapse model": (lambda m, f: m["network"]["projections"][0]["synapse"].update(
        model="nmda_magic"), "nmda_magic"),
    "unknown model": (lambda m, f: m["network"]["populations"][0]["spec"].update(
        model="izhikevich"), "izhikevich"),
    "huge population": (lambda m, f: m["network"]["populations"][0].update(size=2 ** 52),
                        "size"),
    "array referenced twice": (lambda m, f: m["network"]["projections"][0].update(
        post=m["network"]["projections"][0]["pre"]), "referenced twice"),
    "extra top-level key": (lambda m, f: m.update(extra=1), "unexpected"),
    "string array": (lambda m, f: _set_array(
        f, _first_projection_array(m, f, "weight"), np.array([b"x"] * 3)), "string|numbers"),
    "extra member": (lambda m, f: f.create_group("payload"), "unexpected field"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_network_files_are_refused_with_a_clear_error(tmp_path, case):
    edit, message = HOSTILE[case]
    spec = NetworkSpec([Population("A", 5), Population("B", 4)],
                       [Projection("A", "B", Sparse([0, 1, 2], [0, 1, 2], [1.0, 2.0, 3.0]),
                                   current_pulse(), delay=1)],
                       [CurrentInput("A", 10.0)])
    path = save_network(tmp_path / "net.h5", spec)
    load_network(path)
    _rewrite(path, edit)
    with pytest.raises(FormatError, match=message):
        load_network(path, isolate=True)


def test_damaged_and_truncated_network_files_are_refused(tmp_path):
    path = save_network(tmp_path / "net.h5", network())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "damaged.h5").write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum"):
        load_network(tmp_path / "damaged.h5")
    (tmp_path / "cut.h5").write_bytes(path.read_bytes()[:len(data) // 2])
    with pytest.raises(FormatError):
        load_network(tmp_path / "cut.h5")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hh_plugin.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def test_cli_runs_a_network_file_on_both_backends_and_crosschecks(tmp_path):
    pytest.importorskip("brian2")
    spec = network()
    save_network(tmp_path / "net.h5", spec)
    inspect = _cli("inspect", str(tmp_path / "net.h5"))
    assert inspect.returncode == 0, inspect.stderr
    assert "E: 30 x hodgkin_huxley" in inspect.stdout and "leaky_integrator" in inspect.stdout
    assert "E_to_W_e" in inspect.stdout
    for backend in ("torch", "brian2"):
        done = _cli("run", str(tmp_path / "net.h5"), "--backend", backend, "-o",
                    str(tmp_path / f"{backend}.h5"))
        assert done.returncode == 0, done.stdout + done.stderr
    check = _cli("crosscheck", str(tmp_path / "torch.h5"), str(tmp_path / "brian2.h5"),
                 "--plot", str(tmp_path / "raster.png"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "identical spikes" in check.stdout
    rows = {line.split()[0]: line.split() for line in check.stdout.splitlines()
            if line.split() and line.split()[0] in spec.populations}
    assert rows["E"][3] == "none" and int(rows["E"][1]) > 20
    assert (tmp_path / "raster.png").stat().st_size > 1000
    record = load_network(tmp_path / "brian2.h5")
    assert record.backend == "brian2" and record.steps == STEPS

    # a different run is reported as different, with its first diverging step
    changed = load_network(tmp_path / "torch.h5")
    k, i = changed.spikes["E"]
    keep = np.ones(len(k), bool)
    keep[0] = False
    results = {"steps": STEPS, "spikes": {p: changed.raster(p) for p in spec.populations},
               "traces": {}}
    results["spikes"]["E"][k[0], i[0]] = 0.0
    save_network(tmp_path / "changed.h5", changed.spec, results, backend="edited")
    check = _cli("crosscheck", str(tmp_path / "torch.h5"), str(tmp_path / "changed.h5"))
    assert check.returncode == 1
    row = next(line.split() for line in check.stdout.splitlines() if line.startswith("E "))
    assert row[3] == str(k[0])
    mixed = _cli("crosscheck", str(tmp_path / "torch.h5"),
                 str(save(tmp_path / "one.h5", HHSpec(), dt=0.01)))
    assert mixed.returncode == 2 and "single population" in mixed.stderr


def test_network_metadata_follows_the_published_schema(tmp_path):
    """export/schema/hh_plugin_network-<version>.schema.json describes what save_network
    writes: a file without results and one with a run without V (1.1), a run with V
    (spike times) and an RK4 population (1.2); each file is checked against the schema of
    the version it declares, and a 1.2 file is not a valid 1.1 file."""
    jsonschema = pytest.importorskip("jsonschema")
    schemas = {}
    for version in ("1.1", "1.2"):
        schemas[version] = json.loads((ROOT / "export" / "schema" /
                                       f"hh_plugin_network-{version}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schemas[version])
    spec = network()
    rk4 = NetworkSpec([Population("A", 3, HHSpec(method="rk4"))], [], [CurrentInput("A", 5.0)],
                      dt=0.025)
    with torch.no_grad():
        untimed = NetworkModule(spec, dtype=torch.float64)(steps=20)
    cases = (("plain", spec, None, "1.1"), ("untimed", spec, untimed, "1.1"),
             ("run", spec, run_torch(spec, 20), "1.2"), ("rk4", rk4, None, "1.2"))
    for name, net, results, version in cases:
        path = save_network(tmp_path / f"{name}.h5", net, results, backend="torch")
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs["metadata"])
        assert meta["format_version"] == version, name
        jsonschema.validate(meta, schemas[version])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta, schemas["1.1"])
    meta["network"]["projections"] = [{"dense": "yes"}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(meta, schemas["1.2"])


def test_float_delays_are_refused(tmp_path):
    spec = NetworkSpec([Population("A", 5), Population("B", 4)],
                       [Projection("A", "B", Sparse([0, 1], [0, 1], [1.0, 2.0]),
                                   current_pulse(), delay=1)])
    path = save_network(tmp_path / "net.h5", spec)
    _rewrite(path, lambda m, f: _set_array(f, _first_projection_array(m, f, "delay"),
                                           np.array([1.5, 1.0])))
    with pytest.raises(FormatError, match="delay"):
        load_network(path)
