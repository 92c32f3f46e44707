# The behavior-stream image: one entry point for the worker (default), replay, train and generate.
#   docker build -t behavior-stream .
#   docker run --rm behavior-stream --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch is installed first, from the CPU-only index: the default Linux wheel on PyPI pulls in
# several GB of CUDA libraries that a CPU worker never loads. The version is the pin from
# pyproject.toml; the CPU wheel's local version "2.13.0+cpu" satisfies "torch==2.13.0", so the
# `pip install .` below keeps it instead of fetching the CUDA build. Its own layer, so code
# changes do not download torch again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md /tmp/src/
COPY src /tmp/src/src
RUN pip install /tmp/src && rm -rf /tmp/src

# Unprivileged user (numeric, so orchestrators can verify runAsNonRoot). Faust's data directory
# (settings.data_dir, relative) lands in its home; /models is where compose mounts checkpoints.
RUN useradd --create-home --uid 10001 --user-group app && install -d -o app -g app /models
USER 10001:10001
WORKDIR /home/app

# settings.web_port: /metrics, /health and the recommendation API.
EXPOSE 6066
ENTRYPOINT ["behavior-stream"]
CMD ["worker"]
