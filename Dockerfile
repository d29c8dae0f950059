# CPU image of the TGD app. Build:  docker build -t tgd .
# Run:    docker run -p 7860:7860 -v $PWD/data:/data -e TGD_DATA_DIR=/data tgd
# GPU:    use a CUDA base (e.g. nvidia/cuda:12.x-runtime) with python3.11, the same
#         requirements (torch's default wheel ships CUDA), and `docker run --gpus all ...`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    TGD_STATE_DIR=/state \
    TGD_APP_HOST=0.0.0.0 \
    TGD_APP_PORT=7860

WORKDIR /opt/tgd
COPY requirements.txt pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.txt
COPY tgd_core ./tgd_core
COPY app ./app
COPY checkpoints ./checkpoints
RUN pip install --no-cache-dir --no-deps . && mkdir -p /state

EXPOSE 7860
CMD ["python", "-m", "app", "--host", "0.0.0.0", "--port", "7860"]
