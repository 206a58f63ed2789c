#!/usr/bin/env bash
# Every GPU measurement of the performance work in one go, torch only (no Ray needed): the step time of the faithful
# reference against the project eager and with CUDA graphs, the accuracy of float32 / TF32 / graphs against CPU
# float64, and the throughput of 1-16 trials sharing the GPU with and without graphs. About 5-8 minutes on one
# H100. Results (JSON and the printed tables) go to the folder given as $1 (default bench/gpu-results).
#
#   bash bench/run_gpu.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/gpu-results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"; } | tee "$out/machine.txt"
python bench/step_time.py --device cuda --repeats 5 --json "$out/step_time.cuda.json" | tee "$out/step_time.cuda.txt"
python bench/step_time.py --device cuda --repeats 5 --length 10 --json "$out/step_time.cuda.L10.json" | tee "$out/step_time.cuda.L10.txt"
python bench/trials_per_device.py --device cuda --k 1,2,4,8,16 --json "$out/trials.cuda.graphs.json" | tee "$out/trials.cuda.graphs.txt"
python bench/trials_per_device.py --device cuda --k 1,8 --graphs off --json "$out/trials.cuda.eager.json" | tee "$out/trials.cuda.eager.txt"
if python -c "import pytest" 2>/dev/null; then
  python -m pytest -q -p no:cacheprovider tests/test_step_graphs.py 2>&1 | tee "$out/pytest.cuda.txt"
fi
