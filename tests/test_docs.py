"""The documentation site builds with warnings as errors (as in CI).

Needs the ``docs`` extra (Sphinx, MyST-Parser, django-static-mathjax; Furo optional). The
build imports every documented module (autodoc), so it also catches docstrings that do not
render. The formulas are checked in headless Chromium (``apt-get install chromium``; where
it is missing only the pure-Python check that MathJax ships with the site runs).
"""

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("myst_parser")

ROOT = Path(__file__).resolve().parents[1]


PAGES = ("index", "install", "getting_started_brian2", "getting_started_norse", "training",
         "model", "network", "export", "format", "performance", "validation", "api")
MATHJAX = "_static/mathjax/tex-svg-full.js"


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return out / "html"


def test_docs_build_without_warnings(built_docs):
    html = built_docs
    for page in PAGES:
        assert (html / f"{page}.html").is_file(), page
    api = (html / "api.html").read_text(encoding="utf-8")
    for name in ("hh_plugin.model.HHSpec", "hh_plugin.torch.HHCell", "hh_plugin.torch.HH",
                 "hh_plugin.brian2.neuron_group", "hh_plugin.export.save"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"
    for figure in ("learning_curve.png", "hh_membrane.png", "fit_spike_train.png",
                   "network_timeline.png", "fit_network_brian2.png", "fit_conductances.png"):
        assert (html / "_images" / figure).is_file(), figure


def _pages_with_math(html):
    return {page: text for page in PAGES
            if 'class="math' in (text := (html / f"{page}.html").read_text(encoding="utf-8"))}


def test_math_renderer_is_shipped_with_the_site(built_docs):
    # Pure-Python half of the check: every page with formulas loads MathJax from the site
    # itself (the file is there), none from the network.
    pages = _pages_with_math(built_docs)
    assert {"model", "api"} <= set(pages)
    assert (built_docs / MATHJAX).stat().st_size > 1_000_000
    for page, text in pages.items():
        assert f'src="{MATHJAX}"' in text, page
        assert not re.search(r'<script[^>]+src="https?://[^"]*mathjax', text, re.I), page


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _VisibleText(HTMLParser):
    """Text of a page outside scripts, styles and code, and the typeset formulas' count."""

    SKIP = {"script", "style", "pre", "code"}

    def __init__(self):
        super().__init__()
        self.depth, self.text, self.typeset = 0, [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.depth += 1
        if tag == "mjx-container":
            self.typeset += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth == 0:
            self.text.append(data)


#: The widest display formula, in the ex of MathJax's output: Furo's text column at a
#: 1280 px wide window holds about 86 ex (8.6 px each, measured on a screenshot); the
#: "Time stepping" formula of docs/model.md was cut off there (issue 18).
MAX_FORMULA_EX = 75


@pytest.mark.parametrize("page", ["model", "models", "network", "training", "api"])
def test_formulas_are_typeset_offline_in_a_browser(built_docs, tmp_path, page):
    # The pages opened from disk in headless Chromium, which has no network here: every
    # formula is typeset (an mjx-container), none is left as raw LaTeX such as \(g(x)\),
    # and no display formula is wider than the text column of a 1280 px window.
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium): only the pure-Python check "
                    "test_math_renderer_is_shipped_with_the_site ran")
    source = (built_docs / f"{page}.html").read_text(encoding="utf-8")
    formulas = source.count('class="math notranslate nohighlight"')
    assert formulas > 0
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=20000", "--dump-dom", (built_docs / f"{page}.html").as_uri()],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    parser = _VisibleText()
    parser.feed(result.stdout)
    text = "".join(parser.text)
    assert parser.typeset == formulas, (parser.typeset, formulas)
    assert "\\(" not in text and "\\[" not in text
    assert "mjx-merror" not in result.stdout  # no TeX error either
    widths = [float(w) for w in re.findall(
        r'<mjx-container[^>]*display="true"[^>]*>\s*<svg[^>]*width="([0-9.]+)ex"', result.stdout)]
    assert widths and max(widths) <= MAX_FORMULA_EX, widths


def test_help_of_the_package_shows_short_signatures():
    # help(hh_plugin) printed the whole model definition (about 2,000 characters) as the
    # default of HHSpec's ``model`` argument, twice
    import pydoc

    import hh_plugin

    text = pydoc.render_doc(hh_plugin, renderer=pydoc.plaintext)
    assert "ParameterDefinition(name=" not in text
    signature = next(line for line in text.splitlines() if "HHSpec(*, model" in line)
    # the options, the integration method included, take about 260 characters
    assert len(signature) < 300 and "'hodgkin_huxley'" in signature
    assert repr(hh_plugin.HODGKIN_HUXLEY) == (
        "<ModelDefinition 'hodgkin_huxley': gates m, h, n; channels Na, K, L>")


def test_documentation_sources_hold_no_control_characters():
    """A formula written from a Python string without ``r''`` loses its backslash to an
    escape (``"\\bar"`` becomes a backspace and ``ar``); such bytes render as nothing or
    garbage, so no Markdown or Python source of the docs, README or package has them."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "hh_plugin").rglob("*.py"))]
    bad = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        found = sorted({hex(ord(c)) for c in text if ord(c) < 32 and c not in "\n\t\r"})
        if found:
            bad[str(path.relative_to(ROOT))] = found
    assert not bad, f"control characters in: {bad}"
