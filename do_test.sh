#!/usr/bin/env bash
# Run the image on every case folder under test/input the way the platform does: no network, all GPUs,
# /input read-only, a fresh /tmp volume, model/ read-only at /opt/ml/model. Checks each case wrote one output JSON
# holding one finite number (a case that wrote none fails).
#
#   ./do_test.sh                   build, run every case, check the outputs
#   ./do_test.sh --check-outputs   only check the outputs already under test/output (no Docker needed)
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

# check_outputs NAME: the case's output folder holds at least one JSON, each one finite number; 1 otherwise.
check_outputs() {
    local name="$1" out="$OUTPUT_ROOT/$1" f status=0
    shopt -s nullglob
    local files=("$out"/*.json)
    if [ ${#files[@]} -eq 0 ]; then
        echo "FAILED: $name wrote no output JSON in $out"
        return 1
    fi
    for f in "${files[@]}"; do
        if python3 -c 'import json,math,sys; v=json.load(open(sys.argv[1])); assert isinstance(v,(int,float)) and not isinstance(v,bool) and math.isfinite(v)' "$f" 2> /dev/null; then
            echo "ok: $name/$(basename "$f") = $(cat "$f")"
        else
            echo "FAILED: $name/$(basename "$f") is not one finite number"
            status=1
        fi
    done
    return "$status"
}

MODE=run
case "${1:-}" in
    "") ;;
    --check-outputs) MODE=check ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: do_test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

shopt -s nullglob
cases=("$INPUT_ROOT"/*/)
if [ ${#cases[@]} -eq 0 ]; then
    echo "error: do_test.sh: no case folders under $INPUT_ROOT (run: make cases)" >&2
    exit 2
fi

if [ "$MODE" = check ]; then
    failed=0
    for case_dir in "${cases[@]}"; do check_outputs "$(basename "$case_dir")" || failed=1; done
    exit "$failed"
fi

# The container runs as a non-root user. The model folder is NOT made readable here: the platform unpacks the
# model tarball as it was saved, so an unreadable file must fail this test, not be hidden by a chmod.
if [ -d "$MODEL_DIR" ]; then
    unreadable="$(find "$MODEL_DIR" \( -type f ! -perm -o=r \) -o \( -type d ! -perm -o=rx \) | head -n 1)"
    if [ -n "$unreadable" ]; then
        echo "error: do_test.sh: $unreadable is not readable by other users, so not by the container's user (save bundles with this code, or chmod -R a+rX $MODEL_DIR)" >&2
        exit 2
    fi
fi
"$SCRIPT_DIR/do_build.sh"
# The inputs stand for the platform's /input, which is readable: o+rX as the organisers' template does.
chmod -R o+rX "$INPUT_ROOT"

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
    check_outputs "$name" || failed=1
done
exit "$failed"
