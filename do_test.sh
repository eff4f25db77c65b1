#!/usr/bin/env bash
# Run the image on every case folder under test/input the way the platform does: no network, all GPUs,
# /input read-only, a fresh /tmp volume, model/ read-only at /opt/ml/model. Checks each output is one finite number.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-chimera-surv}"
INPUT_ROOT="${INPUT_ROOT:-$SCRIPT_DIR/test/input}"
OUTPUT_ROOT="${OUTPUT_ROOT:-$SCRIPT_DIR/test/output}"
MODEL_DIR="${MODEL_DIR:-$SCRIPT_DIR/model}"
GPU_ARGS=(--gpus all)
if [ "${NO_GPU:-0}" = "1" ]; then GPU_ARGS=(); fi
# CHIMERA_DEADLINE_S (seconds per case) is passed through when set, e.g. CHIMERA_DEADLINE_S=120 ./do_test.sh
ENV_ARGS=()
if [ -n "${CHIMERA_DEADLINE_S:-}" ]; then ENV_ARGS=(--env "CHIMERA_DEADLINE_S=$CHIMERA_DEADLINE_S"); fi

"$SCRIPT_DIR/do_build.sh"

shopt -s nullglob
cases=("$INPUT_ROOT"/*/)
if [ ${#cases[@]} -eq 0 ]; then
    echo "no case folders under $INPUT_ROOT (run: make cases)" >&2
    exit 1
fi

# The container runs as a non-root user: make the inputs and the model readable by it, as the organisers'
# template does (o+rX: read for everyone, search on folders only).
chmod -R o+rX "$INPUT_ROOT"
if [ -d "$MODEL_DIR" ]; then chmod -R o+rX "$MODEL_DIR"; fi

failed=0
for case_dir in "${cases[@]}"; do
    name="$(basename "$case_dir")"
    out="$OUTPUT_ROOT/$name"
    rm -rf "$out" && mkdir -p "$out" && chmod 777 "$out"
    volume="chimera-tmp-$name-$$"
    docker volume create "$volume" > /dev/null
    echo "=== $name"
    if ! docker run --rm --platform=linux/amd64 --network none "${GPU_ARGS[@]}" "${ENV_ARGS[@]}" \
        --volume "$case_dir:/input:ro" --volume "$out:/output" \
        --volume "$MODEL_DIR:/opt/ml/model:ro" --volume "$volume:/tmp" \
        "$DOCKER_IMAGE_TAG"; then
        echo "FAILED: $name (container exited non-zero)"
        failed=1
    fi
    docker volume rm "$volume" > /dev/null
    for f in "$out"/*.json; do
        if python3 -c 'import json,math,sys; v=json.load(open(sys.argv[1])); assert isinstance(v,(int,float)) and not isinstance(v,bool) and math.isfinite(v)' "$f"; then
            echo "ok: $name/$(basename "$f") = $(cat "$f")"
        else
            echo "FAILED: $name/$(basename "$f") is not one finite number"
            failed=1
        fi
    done
done
exit "$failed"
