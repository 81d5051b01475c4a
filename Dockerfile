# The control plane's own image (what charts/controlplane deploys; the sandbox images are under sandbox-images/).
#   docker build -t controlplane:0.1.0 .                       # where a registry serves the base image
#   docker build --build-arg BASE=<your python 3.11+ image> .   # any Debian-like image with python3 -m venv
# EXTRAS picks the optional dependencies (the Kubernetes Job backend's client lives in the "kubernetes" extra).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG EXTRAS=[kubernetes]
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
RUN python3 -m venv /opt/controlplane \
    && /opt/controlplane/bin/pip install --no-cache-dir --no-compile ".${EXTRAS}"

FROM ${BASE}
COPY --from=build /opt/controlplane /opt/controlplane
COPY automations /app/automations
# read-only root filesystem: state goes to /data (an emptyDir in the chart), the database is PostgreSQL
ENV PATH=/opt/controlplane/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CP_HOST=0.0.0.0 CP_DATA_DIR=/data CP_AUTOMATIONS_DIR=/app/automations
USER 10001:10001
WORKDIR /app
EXPOSE 8080
ENTRYPOINT ["controlplane"]
CMD ["serve"]
