#!/usr/bin/env bash
# Save the image and the model tarball for upload (Algorithm → Container and Algorithm → Models).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-chimera-surv}"
MODEL_DIR="${MODEL_DIR:-$SCRIPT_DIR/model}"
STAMP="$(date +%Y%m%d-%H%M%S)"

"$SCRIPT_DIR/do_build.sh"
docker save "$DOCKER_IMAGE_TAG" | gzip -c > "$SCRIPT_DIR/${DOCKER_IMAGE_TAG}_${STAMP}.tar.gz"
tar -czf "$SCRIPT_DIR/model_${STAMP}.tar.gz" -C "$MODEL_DIR" .
echo "image: ${DOCKER_IMAGE_TAG}_${STAMP}.tar.gz   model: model_${STAMP}.tar.gz"
