#!/usr/bin/env bash
# Build the algorithm image for the platform's architecture.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-chimera-surv}"

docker build --platform=linux/amd64 --tag "$DOCKER_IMAGE_TAG" "$@" "$SCRIPT_DIR"
