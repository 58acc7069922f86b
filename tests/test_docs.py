"""The documentation site builds with warnings as errors (as in CI).

Needs the ``docs`` extra (Sphinx, MyST-Parser; Furo optional). The build imports every
documented module (autodoc), so it also catches docstrings that do not render.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    html = tmp_path / "html"
    for page in ("index", "install", "getting_started_brian2", "getting_started_norse",
                 "training", "model", "export", "format", "performance", "validation", "api"):
        assert (html / f"{page}.html").is_file(), page
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in ("hh_plugin.model.HHSpec", "hh_plugin.torch.HHCell", "hh_plugin.torch.HH",
                 "hh_plugin.brian2.neuron_group", "hh_plugin.export.save"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    for figure in ("learning_curve.png", "hh_membrane.png", "fit_spike_train.png"):
        assert (html / "_images" / figure).is_file(), figure


def test_help_of_the_package_shows_short_signatures():
    # help(hh_plugin) printed the whole model definition (about 2,000 characters) as the
    # default of HHSpec's ``model`` argument, twice
    import pydoc

    import hh_plugin

    text = pydoc.render_doc(hh_plugin, renderer=pydoc.plaintext)
    assert "ParameterDefinition(name=" not in text
    signature = next(line for line in text.splitlines() if "HHSpec(*, model" in line)
    assert len(signature) < 250 and "'hodgkin_huxley'" in signature
    assert repr(hh_plugin.HODGKIN_HUXLEY) == (
        "<ModelDefinition 'hodgkin_huxley': gates m, h, n; channels Na, K, L>")
