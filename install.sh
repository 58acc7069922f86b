#!/usr/bin/env bash
# Installs hh_plugin with everything its backends, tests and examples use, into the
# current Python environment (activate a virtual environment first if you want one).
#
# - torch: an already installed torch is kept (a CPU build stays a CPU build). Otherwise
#   torch==2.13.0 is installed (on a machine without a GPU, point pip at a CPU wheel).
# - norse is installed with --no-deps: its declared torchvision dependency would make
#   pip replace a CPU torch with a CUDA build, and norse.torch never imports torchvision.
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")"

if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install "torch==2.13.0"
fi
"$PY" -m pip install --no-deps "norse==1.1.0"
"$PY" -m pip install -e ".[brian2,torch,examples,test,docs]"
"$PY" -c "import hh_plugin, hh_plugin.torch, hh_plugin.brian2; print('hh_plugin', hh_plugin.__version__, 'installed')"
