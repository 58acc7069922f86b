"""Sphinx configuration of the hh_plugin documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The formulas are typeset by MathJax 3, which is copied into the built site
(``_static/mathjax/``, from the ``django-static-mathjax`` package of the ``docs`` extra),
so the pages show typeset formulas without a network connection.
"""

import importlib.util
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # document the checkout even when it is not installed
warnings.filterwarnings("ignore", category=DeprecationWarning)  # norse's torch.jit notices

import hh_plugin  # noqa: E402

project = "hh_plugin"
author = "hh_plugin contributors"
copyright = "hh_plugin contributors"
version = release = hh_plugin.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown: $...$ / $$...$$ math, ::: fences, heading anchors for [text](#anchor) links
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from the docstrings (Google style "Args:" and NumPy style both read)
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# torch's nn.Module attributes are noise in the API pages
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # "Attributes:" as fields: no clash with documented properties
napoleon_custom_sections = [("Options", "params_style")]  # HHSpec's spike/reset options

# MathJax shipped with the site: one self-contained file (TeX input with all its
# extensions, SVG output with its glyphs), copied into _static/ after the build.
MATHJAX_FILE = Path("mathjax", "tex-svg-full.js")
mathjax_path = MATHJAX_FILE.as_posix()  # relative paths are relative to _static/


def _mathjax_source() -> Path:
    spec = importlib.util.find_spec("mathjax")
    source = (None if spec is None or spec.origin is None else
              Path(spec.origin).parent / "static" / "mathjax" / "es5" / MATHJAX_FILE.name)
    if source is None or not source.is_file():
        raise RuntimeError("the documentation ships MathJax from the django-static-mathjax "
                           "package: pip install -e '.[docs]' (or django-static-mathjax)")
    return source


def _copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir, "_static", MATHJAX_FILE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_mathjax_source(), target)


html_theme = "furo" if __import__("importlib").util.find_spec("furo") else "alabaster"
html_title = f"hh_plugin {release}"


# --- pages assembled from files outside docs/ ----------------------------------------
# docs/export.md links the specification as ../export/FORMAT.md (right on GitHub); in the
# built site that text is the page "format", which inlines export/FORMAT.md, whose link to
# the JSON Schema becomes a download of the schema file.
FORMAT_SPEC = Path(ROOT, "export", "FORMAT.md")
_INCLUDE_FORMAT = re.compile(r"```\{include\} \.\./export/FORMAT\.md\n(?::[^\n]*\n)*```\n?")


def _shift_headings(markdown: str) -> str:
    out, fence = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        out.append("#" + line if not fence and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out) + "\n"


def _source_read(app, docname, source):
    text = source[0]
    if docname == "export":
        text = text.replace("](../export/FORMAT.md)", "](format.md)")
    elif docname == "format" and _INCLUDE_FORMAT.search(text):
        app.env.note_dependency(str(FORMAT_SPEC))
        spec = FORMAT_SPEC.read_text(encoding="utf-8")
        spec = re.sub(r"\[`?(schema/[^\]`]+)`?\]\((schema/[^)\s]+)\)",
                      r"{download}`\1 <../export/\2>`", spec)
        text = _INCLUDE_FORMAT.sub(lambda _: _shift_headings(spec), text)
    source[0] = text


def setup(app):
    _mathjax_source()  # fail at the start, not after the build
    app.connect("source-read", _source_read)
    app.connect("build-finished", _copy_mathjax)
