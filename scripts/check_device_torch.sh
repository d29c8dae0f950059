#!/usr/bin/env bash
# Run the training engine's tests here, on the CPU, under the PyTorch the device machine runs
# (its image's torch, not this project's pin: /work/.library/device/KINDS.md), before spending
# device time on it. A venv in $DIR holds only that torch and its torchvision; everything else
# (numpy, pydantic, the nvidia libraries torch loads, ...) comes from the project's .venv
# through a .pth file placed after the venv's own packages.
#
#   bash scripts/check_device_torch.sh [TORCH_VERSION] [TORCHVISION_VERSION] [PYTEST ARGS...]
#
# Defaults: 2.11.0 and 0.26.0 (the device image as KINDS.md last read it), the fast path's,
# trainer's, group training's, distillation's and models' tests.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_version=${1:-2.11.0}
vision_version=${2:-0.26.0}
shift $(( $# < 2 ? $# : 2 ))
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(tests/test_fast_path.py tests/test_bench_gpu.py
    tests/test_group_training.py tests/test_trainer.py tests/test_distill.py tests/test_models.py)
dir=${DIR:-/tmp/device_torch_$torch_version}
python=$(readlink -f .venv/bin/python)
if [ ! -x "$dir/venv/bin/python" ]; then
    mkdir -p "$dir"
    .venv/bin/python -m pip download -q --no-deps -d "$dir" "torch==$torch_version" \
        "torchvision==$vision_version"
    "$python" -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install -q --no-deps --no-index "$dir"/torch-*.whl \
        "$dir"/torchvision-*.whl
    site=$("$dir/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    .venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
        > "$site/zz_project_venv.pth"
fi
"$dir/venv/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, \
'torchvision', torchvision.__version__)"
GRADIO_ANALYTICS_ENABLED=False "$dir/venv/bin/python" -m pytest -q -p no:cacheprovider \
    "${tests[@]}"
