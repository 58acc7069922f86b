#!/usr/bin/env bash
# Installs hh_plugin with everything its backends, tests, examples and documentation use,
# into the current Python environment (activate a virtual environment first if you want one).
#
# Settings (environment variables):
#   PYTHON               the Python to install into (default: python3)
#   HH_PLUGIN_TORCH      which torch build to install when none is installed (an installed
#                        torch is always kept, so a CPU build stays a CPU build):
#                          auto (default)  the CPU build, unless an NVIDIA GPU is found
#                                          (nvidia-smi -L, /proc/driver/nvidia/gpus)
#                          cpu             torch 2.13.0 from PyTorch's CPU wheel index
#                          cuda            torch 2.13.0 from the default index (on Linux the
#                                          CUDA build: about 3 GB with its nvidia-* packages)
#   HH_PLUGIN_TEST_ENVS  none (default) or all: also install the environments of the
#                        slow tests that need them (tests/environments.py), into
#                        ~/.cache/hh_plugin: Triton for the kernel's CPU interpreter test
#                        (about 1 GB), Brian2 2.8 for the Brian2 tests on the oldest
#                        supported Brian2 (about 250 MB) and, only where nvcc is installed,
#                        a Brian2CUDA environment (about 340 MB). Without them those tests
#                        are skipped; the tests themselves never download anything.
#   HH_PLUGIN_DRY_RUN=1  print the commands instead of running them.
#
# The neuron extra brings NEURON and, on Linux, the mpich wheel: the MPI library NEURON loads
# for runs under mpiexec (hh_plugin.neuron.mpi finds it); it depends on nothing else.
#
# norse is installed last and with --no-deps: it declares torchvision, which would make pip
# replace a CPU torch with a CUDA build, and norse.torch never imports torchvision.
set -euo pipefail
PY=${PYTHON:-python3}
cd "$(dirname "$0")"

TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
TORCH_MODE=${HH_PLUGIN_TORCH:-auto}
TEST_ENVS=${HH_PLUGIN_TEST_ENVS:-none}

say() { echo "install.sh: $*"; }
run() {
    echo "+ $*"
    if [ "${HH_PLUGIN_DRY_RUN:-0}" != 1 ]; then "$@"; fi
}
has_nvidia_gpu() {
    if [ -d /proc/driver/nvidia/gpus ] && [ -n "$(ls -A /proc/driver/nvidia/gpus 2>/dev/null)" ]; then
        return 0
    fi
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

case "$TORCH_MODE" in auto|cpu|cuda) ;; *)
    say "HH_PLUGIN_TORCH=$TORCH_MODE: use auto, cpu or cuda" >&2; exit 2 ;;
esac
case "$TEST_ENVS" in none|all) ;; *)
    say "HH_PLUGIN_TEST_ENVS=$TEST_ENVS: use none or all" >&2; exit 2 ;;
esac

# --- torch --------------------------------------------------------------------------
if installed=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null); then
    say "keeping the installed torch $installed"
else
    if [ "$TORCH_MODE" = auto ]; then
        if has_nvidia_gpu; then TORCH_MODE=cuda; else TORCH_MODE=cpu; fi
        reason="(HH_PLUGIN_TORCH=auto: $( [ "$TORCH_MODE" = cuda ] && echo "an NVIDIA GPU was found" || echo "no NVIDIA GPU found"))"
    else
        reason="(HH_PLUGIN_TORCH=$TORCH_MODE)"
    fi
    if [ "$TORCH_MODE" = cpu ]; then
        say "installing torch $TORCH_VERSION, CPU build, from PyTorch's CPU wheel index $reason;"
        say "HH_PLUGIN_TORCH=cuda bash install.sh installs the CUDA build instead"
        # torch alone from the CPU index, then its dependencies from the default index
        run "$PY" -m pip install --no-deps "torch==$TORCH_VERSION" --extra-index-url "$TORCH_CPU_INDEX"
        run "$PY" -m pip install "torch==$TORCH_VERSION"
        if [ "${HH_PLUGIN_DRY_RUN:-0}" != 1 ] && \
           "$PY" -c "import sys, torch; sys.exit(torch.version.cuda is None)" 2>/dev/null; then
            say "warning: pip installed a CUDA build of torch (was $TORCH_CPU_INDEX unreachable?)" >&2
        fi
    else
        say "installing torch $TORCH_VERSION from the default index $reason"
        run "$PY" -m pip install "torch==$TORCH_VERSION"
    fi
fi

# --- hh_plugin and its dependencies, then norse ---------------------------------------
run "$PY" -m pip install -e ".[brian2,torch,neuron,examples,test,docs]"
run "$PY" -m pip install --no-deps "norse==1.1.0"

# --- environments of the slow tests ---------------------------------------------------
if [ "$TEST_ENVS" = all ]; then
    run "$PY" tests/environments.py install triton cuda brian28
else
    say "not installing the three environments of some slow tests (Triton, about 1 GB; Brian2"
    say "2.8, about 250 MB; Brian2CUDA, about 340 MB, only with nvcc): those tests will be skipped."
    say "HH_PLUGIN_TEST_ENVS=all bash install.sh installs them into ~/.cache/hh_plugin"
fi

if [ "${HH_PLUGIN_DRY_RUN:-0}" != 1 ]; then
    "$PY" -c "import hh_plugin, hh_plugin.torch, hh_plugin.brian2, torch; print('install.sh: hh_plugin', hh_plugin.__version__, 'installed; torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU build)')"
fi
say "note: 'pip check' (and pip's dependency resolver, when a later pip install touches"
say "norse's dependencies) reports 'norse 1.1.0 requires torchvision, which is not installed'."
say "That is expected and harmless: norse.torch never imports torchvision, and installing it"
say "would make pip replace this torch with another build. Nothing else is missing."
