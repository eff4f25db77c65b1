#!/usr/bin/env bash
# The one script a lent GPU machine runs (never CI): network training on CUDA against the CPU
# (test/test_train_device.py's GPU half) and the cost of `auto` with a network among its options when the networks
# train on the GPU (benchmarks/auto_networks_cost.py --device cuda), beside the same point on the CPU in the same run.
# Then training end to end with `device: cuda` against `device: cpu` and the container on both bundles
# (benchmarks/cuda_training.py). STAGES picks the parts (default: "pytest cost e2e").
# Results and logs go to $OUT (default runs/gpu_out). Wheels the machine lacks may be carried in .whl/ (ignored by
# git; fill it with `pip download --no-deps -d .whl --python-version 3.12 --only-binary=:all: NAME...` for the names
# installed below, the lent machine's python; the device tool carries at most 64 MiB).
set -u
OUT=${OUT:-runs/gpu_out}
PY=${PY:-python3}
POINT=${POINT:-95x3000}
STAGES=${STAGES:-pytest cost e2e}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
if [ -d .whl ]; then
  # --no-deps: only what the machine lacks (its own torch and numpy stay)
  "$PY" -m pip install -q --no-index --no-deps --find-links .whl scikit-survival scikit-learn joblib pydantic \
    pydantic-core annotated-types "typing-inspection>=0.4.4" "typing-extensions>=4.16.0" pyyaml tqdm h5py safetensors pytest pluggy \
    iniconfig packaging pyvips pyvips-binary cffi pycparser openslide-python openslide-bin \
    lifelines autograd autograd-gamma formulaic interface-meta narwhals wrapt >"$OUT/pip.log" 2>&1 || true
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.csv" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())" >>"$OUT/gpu.csv" 2>&1
if [[ " $STAGES " == *" pytest "* ]]; then
  "$PY" -m pytest -q -p no:cacheprovider -rs test/test_train_device.py >"$OUT/pytest_train_device.log" 2>&1
  echo "pytest rc $?" >>"$OUT/pytest_train_device.log"
fi
if [[ " $STAGES " == *" cost "* ]]; then
  # the CPU point in the background (2 threads of 16 cores), the CUDA point in the foreground: one run, one ratio
  timeout 400 "$PY" benchmarks/auto_networks_cost.py --points "$POINT" --work /tmp/anc_cpu \
    --result "$OUT/auto_networks_cost_cpu.json" >"$OUT/anc_cpu.log" 2>&1 &
  timeout 400 "$PY" benchmarks/auto_networks_cost.py --points "$POINT" --device cuda --work /tmp/anc_cuda \
    --result "$OUT/auto_networks_cost_cuda.json" >"$OUT/anc_cuda.log" 2>&1
  wait
fi
if [[ " $STAGES " == *" e2e "* ]]; then
  timeout 300 "$PY" benchmarks/cuda_training.py --work /tmp/cuda_training --out "$OUT/cuda_training.json" \
    >"$OUT/cuda_training.log" 2>&1
  echo "cuda_training rc $?" >>"$OUT/cuda_training.log"
fi
echo done >"$OUT/finished"
