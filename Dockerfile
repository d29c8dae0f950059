# The TGD app (and the `tgd` command line) in a container, on the shipped checkpoints.
#
# CPU image (default: PyTorch's CPU wheels, ~1 GB smaller than the CUDA build):
#   docker build -t tgd .
#   docker run -p 7860:7860 -e TGD_APP_AUTH=user:password -v "$PWD/data:/data:ro" \
#     -v tgd-state:/state tgd
# GPU image (PyTorch's default wheels bundle CUDA; the host needs the NVIDIA driver and the
# NVIDIA Container Toolkit):
#   docker build -t tgd:gpu --build-arg TORCH_INDEX=https://pypi.org/simple .
#   docker run --gpus all -p 7860:7860 -e TGD_APP_AUTH=user:password -v "$PWD/data:/data:ro" \
#     -v tgd-state:/state tgd:gpu
# The app listens on every interface inside the container, so it refuses to start without a
# password (TGD_APP_AUTH=user:password); for this machine only, publish the port on loopback
# and say so: docker run -p 127.0.0.1:7860:7860 ... tgd python -m app --allow-public-without-auth
# The command line in the same image, e.g. a distributed run on all GPUs:
#   docker run --gpus all -v "$PWD/data:/data:ro" -v tgd-state:/state tgd:gpu \
#     torchrun --nproc-per-node 8 -m tgd_core experiment recipes/paper.yaml --out /state/paper
#
# /data holds datasets (cifar10/ in the official "python version" layout; without it the app
# still shows the topology of uploaded images and the shipped models); /state holds the PI
# cache, runs and the job store, so jobs survive the container.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    TGD_DATA_DIR=/data \
    TGD_STATE_DIR=/state \
    TGD_APP_HOST=0.0.0.0 \
    TGD_APP_PORT=7860

WORKDIR /opt/tgd
COPY requirements.txt pyproject.toml README.md ./
# torch and torchvision first, from TORCH_INDEX; then the pinned rest (torch already satisfied)
RUN pip install --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple \
        "torch==$(sed -n 's/^torch==//p' requirements.txt)" \
        "torchvision==$(sed -n 's/^torchvision==//p' requirements.txt)" \
 && pip install -r requirements.txt
COPY tgd_core ./tgd_core
COPY app ./app
COPY checkpoints ./checkpoints
COPY recipes ./recipes
# editable: the package finds checkpoints/ and recipes/ beside it, as in a source checkout
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 1000 tgd && mkdir -p /data /state && chown tgd /state
USER tgd

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"
CMD ["python", "-m", "app"]
