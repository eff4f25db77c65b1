#!/usr/bin/env bash
# Save the model tarball (Algorithm → Models) and, when Docker is here, the image tarball (Algorithm → Container).
#
#   ./do_save.sh [--force]
#
# The model tarball comes first and needs no Docker. It is refused (one line per bundle, naming it and the cause)
# when model/ holds a demo bundle (the seeded test-tiny encoder) or a bundle whose encoder has no weights under
# model/encoders/<name>/; --force packs it anyway. Its members are root:root, files 0644 and folders 0755 (so the
# container's non-root user can read them whatever the local modes), in name order with a fixed mtime: the same
# model/ always gives the same bytes. Dot files (e.g. an interrupted write's temp file) are left out.
# Environment: MODEL_DIR (default model/), OUT_DIR (default the repository), DOCKER_IMAGE_TAG, PYTHON (default
# .venv/bin/python), SOURCE_DATE_EPOCH (the members' mtime, default 0), STAMP (the file names' suffix).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-chimera-surv}"
MODEL_DIR="${MODEL_DIR:-$SCRIPT_DIR/model}"
OUT_DIR="${OUT_DIR:-$SCRIPT_DIR}"
PYTHON="${PYTHON:-$SCRIPT_DIR/.venv/bin/python}"
STAMP="${STAMP:-$(date -u +%Y%m%d-%H%M%S)}"

FORCE=()
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=(--force) ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: do_save.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

if [ ! -d "$MODEL_DIR" ]; then
    echo "error: MODEL_DIR: $MODEL_DIR is not a folder (train first: python -m train CONFIG)" >&2
    exit 2
fi
if ! tar --version 2> /dev/null | grep -q "GNU tar"; then
    echo "error: do_save.sh needs GNU tar (--sort, --mode, --owner); on macOS: brew install gnu-tar, then PATH=\"\$(brew --prefix gnu-tar)/libexec/gnubin:\$PATH\"" >&2
    exit 2
fi
if [ ! -x "$PYTHON" ]; then PYTHON=python3; fi

# Refuse what should not be uploaded (chimera_surv/model_dir.py: one line per bundle and cause).
PYTHONPATH="$SCRIPT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m chimera_surv.model_dir "$MODEL_DIR" ${FORCE[@]+"${FORCE[@]}"}

mkdir -p "$OUT_DIR"
model_tar="$OUT_DIR/model_${STAMP}.tar.gz"
tar --create --format=gnu --sort=name --mtime="@${SOURCE_DATE_EPOCH:-0}" \
    --owner=0 --group=0 --numeric-owner --mode='u=rwX,go=rX' --no-wildcards-match-slash --exclude='.?*' \
    --directory "$MODEL_DIR" . | gzip -n -c > "$model_tar.part"
mv "$model_tar.part" "$model_tar"
echo "model: $model_tar"

if ! command -v docker > /dev/null 2>&1; then
    echo "image: not saved: docker is not installed here (the model tarball above is complete; run ./do_save.sh on a machine with Docker for the image)"
    exit 0
fi
"$SCRIPT_DIR/do_build.sh"
image_tar="$OUT_DIR/${DOCKER_IMAGE_TAG}_${STAMP}.tar.gz"
docker save "$DOCKER_IMAGE_TAG" | gzip -c > "$image_tar.part"
mv "$image_tar.part" "$image_tar"
echo "image: $image_tar"
