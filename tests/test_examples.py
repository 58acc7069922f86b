"""The examples run (quick settings) and do what their docstrings say."""

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_norse_network_example_takes_a_training_step():
    pytest.importorskip("norse")
    before, after = load_example("norse_network").main(["--steps", "120"])
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before
