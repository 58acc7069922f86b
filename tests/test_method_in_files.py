"""The integration method travels in the file (issue 19): population files name it in
``spec.integrator``, network files in each population's specification."""

import json

import h5py
import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.export import FormatError, load, load_network, save, save_network, write_checksum
from hh_plugin.network import NetworkSpec, Population


def test_population_file_round_trip_keeps_the_method(tmp_path):
    for method in ("exponential_euler", "rk4"):
        path = tmp_path / f"{method}.h5"
        save(path, HHSpec(method=method), dt=0.025)
        assert load(path).spec.method == method
        with h5py.File(path, "r") as f:
            integrator = json.loads(f.attrs["metadata"])["spec"]["integrator"]
        assert integrator.startswith(method)


def test_an_unknown_integrator_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    save(path, HHSpec(), dt=0.025)
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        meta["spec"]["integrator"] = "backward_euler"
        f.attrs["metadata"] = json.dumps(meta)
    write_checksum(path)
    with pytest.raises(FormatError, match="integrator"):
        load(path)


def test_network_file_round_trip_keeps_each_population_method(tmp_path):
    spec = NetworkSpec([Population("E", 4, HHSpec(method="rk4")),
                        Population("I", 3, HHSpec())], dt=0.025)
    path = tmp_path / "n.h5"
    save_network(path, spec)
    record = load_network(path)
    assert record.spec.populations["E"].spec.method == "rk4"
    assert record.spec.populations["I"].spec.method == "exponential_euler"
    np.testing.assert_array_equal(record.spec.populations["E"].spec.parameters["gNa"], 120.0)
