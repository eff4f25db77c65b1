#!/usr/bin/env bash
# Build the algorithm image for the platform's architecture.
#
#   ./do_build.sh [docker build options]
#   BASE_IMAGE=python:3.11-slim PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu126 ./do_build.sh
#
# BASE_IMAGE (default: the Dockerfile's ARG, a PyTorch CUDA runtime image) is pulled first, so a base that
# cannot be pulled is said in one line before the build starts; docs/submission.md, step 4, has the alternative.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-chimera-surv}"
DEFAULT_BASE="$(sed -n 's/^ARG BASE_IMAGE=//p' "$SCRIPT_DIR/Dockerfile" | head -n 1)"
BASE_IMAGE="${BASE_IMAGE:-$DEFAULT_BASE}"

if ! command -v docker > /dev/null 2>&1; then
    echo "error: do_build.sh: docker is not installed here; the image cannot be built (./do_save.sh still writes the model tarball)" >&2
    exit 2
fi
if ! docker info > /dev/null 2>&1; then
    echo "error: do_build.sh: docker is installed but its daemon does not answer (is it running? may this user use it?)" >&2
    exit 2
fi
if ! docker image inspect "$BASE_IMAGE" > /dev/null 2>&1; then
    if ! pulled="$(docker pull --platform=linux/amd64 "$BASE_IMAGE" 2>&1)"; then
        echo "error: do_build.sh: the base image $BASE_IMAGE cannot be pulled ($(printf '%s' "$pulled" | tail -n 1)); set BASE_IMAGE to another (docs/submission.md, step 4)" >&2
        exit 2
    fi
fi
BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then BUILD_ARGS+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL"); fi
docker build --platform=linux/amd64 "${BUILD_ARGS[@]}" --tag "$DOCKER_IMAGE_TAG" "$@" "$SCRIPT_DIR"
