# One image per component, each with only what it needs:
#   docker build --target operator -t ghcr.io/modelfactory/operator:0.1.0 .
#   docker build --target serving  -t ghcr.io/modelfactory/serving:0.1.0 .
#   docker build --target training -t ghcr.io/modelfactory/training:0.1.0 .
# Without a Docker engine, `python3 hack/cluster.py images` builds the same file with buildah,
# swapping only the two base images below for ones assembled from Debian packages.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Helm v3.20 needs Go 1.25 or newer. An image that already holds /out/helm compiles nothing
# (hack/images.py passes one, with the helm hack/cluster.py built on the machine).
ARG GO_IMAGE=golang:1.25-bookworm

FROM ${GO_IMAGE} AS helm
ARG HELM_VERSION=v3.20.2
RUN if [ ! -x /out/helm ]; then \
      CGO_ENABLED=0 GOBIN=/out go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
        helm.sh/helm/v3/cmd/helm@${HELM_VERSION}; \
    fi

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin app
WORKDIR /app
# One set of pins for every image, so a model trained in one loads in the other.
COPY constraints.txt /src/constraints.txt
COPY api /src/api
COPY artifacts /src/artifacts

FROM base AS operator
COPY --from=helm /out/helm /usr/local/bin/helm
COPY operator /src/operator
RUN pip install -c /src/constraints.txt /src/api /src/operator && rm -rf /src
COPY crds /app/crds
COPY charts /app/charts
ENV MF_CHARTS_DIR=/app/charts HOME=/tmp
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["modelfactory-operator"]

FROM base AS serving
COPY serving /src/serving
RUN pip install -c /src/constraints.txt /src/api /src/artifacts "/src/serving[s3,gcs]" && rm -rf /src
ENV HOME=/tmp
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["modelfactory-serve"]

FROM base AS training
COPY training /src/training
RUN pip install -c /src/constraints.txt /src/api /src/artifacts "/src/training[s3,gcs]" && rm -rf /src
ENV HOME=/tmp
USER 1000:1000
ENTRYPOINT ["modelfactory-train"]
