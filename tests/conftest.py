"""Shared fixtures: the reference trajectories of brainpy.state.HH (see data/REFERENCE_PROVENANCE.md)."""

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
REFERENCE_FILES = {
    0.1: DATA / "brainpy_hh_const_dt0.1_f64.npz",
    0.01: DATA / "brainpy_hh_const_dt0.01_f64_30ms.npz",
}


def load_reference(dt_ms: float) -> dict:
    with np.load(REFERENCE_FILES[dt_ms]) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(params=sorted(REFERENCE_FILES), ids=lambda dt: f"dt{dt}ms")
def reference(request):
    return load_reference(request.param)


@pytest.fixture
def grad_reference():
    with np.load(DATA / "brainpy_hh_grad_f64.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture
def numpy_target():
    """Brian2 on its numpy target in a fresh scope; the target and ``defaultclock.dt``
    restored afterwards."""
    brian2 = pytest.importorskip("brian2")
    old_target, old_dt = brian2.prefs.codegen.target, brian2.defaultclock.dt
    brian2.prefs.codegen.target = "numpy"
    brian2.start_scope()
    yield brian2
    brian2.prefs.codegen.target = old_target
    brian2.defaultclock.dt = old_dt
    brian2.start_scope()
