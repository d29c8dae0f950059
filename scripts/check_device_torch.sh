#!/usr/bin/env bash
# Run tests here, on the CPU, in an environment like the device image's before spending device
# time on it: its Python, PyTorch and NumPy (/work/.library/device/KINDS.md: Python 3.12.3,
# torch 2.11.0, torchvision 0.26.0, numpy 2.5.2 when last read), not this project's pins; the
# wheels docs/device.md carries there (pydantic, plotly) at the versions carried.
#
#   bash scripts/check_device_torch.sh [PYTEST ARGS...]
#
# The versions come from DEVICE_PYTHON (python3.12, else pyenv's 3.12), DEVICE_TORCH (2.11.0),
# DEVICE_TORCHVISION (0.26.0) and DEVICE_NUMPY (2.5.2); the venv is built once in DIR
# (/tmp/device_env_<torch>).
# The CUDA libraries torch loads even on a CPU are the project .venv's (linked, not copied).
# Default tests: the training engine's, the experiment runner's, the device scripts' and the
# topology kernels'.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${DEVICE_PYTHON:-python3.12}
if [ -z "${DEVICE_PYTHON:-}" ] && ! python3.12 -V >/dev/null 2>&1; then
    # a pyenv shim that is not the global version: pyenv's own Python 3.12, if installed
    for candidate in "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.12*/bin/python3.12; do
        [ -x "$candidate" ] && python=$candidate
    done
fi
torch_version=${DEVICE_TORCH:-2.11.0}
vision_version=${DEVICE_TORCHVISION:-0.26.0}
numpy_version=${DEVICE_NUMPY:-2.5.2}
dir=${DIR:-/tmp/device_env_$torch_version}
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/test_fast_path.py tests/test_bench_gpu.py
    tests/test_group_training.py tests/test_trainer.py tests/test_training.py
    tests/test_distill.py tests/test_models.py tests/test_on_the_fly.py
    tests/test_teacher_inference.py tests/test_checkpoints.py tests/test_experiments.py
    tests/test_staging.py tests/test_topology_paper.py tests/test_kernel_tiles.py)
venv=$dir/venv
if ! "$python" -c "import sys; assert sys.version_info[:2] >= (3, 10)" 2>/dev/null; then
    echo "check_device_torch: $python does not run here: set DEVICE_PYTHON to a Python 3.12" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$dir"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip)
    "${pip[@]}" install -q "numpy==$numpy_version" scipy scikit-learn numba gudhi ripser persim \
        PyYAML tqdm pillow pytest pytest-timeout filelock typing_extensions sympy networkx \
        jinja2 fsspec "setuptools<82" $(grep -E '^(pydantic|plotly)==' requirements.txt)
    "${pip[@]}" download -q --no-deps --only-binary=:all: -d "$dir" \
        "torch==$torch_version" "torchvision==$vision_version"
    "${pip[@]}" install -q --no-deps --no-index "$dir"/torch-*.whl "$dir"/torchvision-*.whl
    purelib() { "$1" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
    ln -s "$(purelib .venv/bin/python)/nvidia" "$(purelib "$venv/bin/python")/nvidia"
fi
"$venv/bin/python" -c "import sys, numpy, numba, torch, torchvision; print('python', \
sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'torch', \
torch.__version__, 'torchvision', torchvision.__version__)"
GRADIO_ANALYTICS_ENABLED=False "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
