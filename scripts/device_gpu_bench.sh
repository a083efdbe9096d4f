#!/bin/sh
# `make gpu-bench` on a lent GPU machine, in one call: it has torch and transformers in its image
# but no network, no Airflow and none of this project's virtual environment, so nothing is installed
# from an index. Wheels carried in .device/wheels (ignored by git; fill it here with
#   .venv/bin/pip download --no-deps -d .device/wheels transformers==5.23.0 huggingface_hub==<the lock's>
# ) go first on the path, so the engine runs with the transformers it is tested with. Carry the
# wheels only (14 MiB): unpacked (.device/site, made there) they are over 60 MiB.
# GPU_BENCH_ARGS adds arguments (a dry run here: GPU_BENCH_ARGS="--smoke --models Salesforce/codet5-small").
# Figures land in $OUT (the device tool brings that folder back); about 8 minutes on an H100/H200.
#
#   run(command="sh scripts/device_gpu_bench.sh", carry=[".device/wheels"], timeout_s=560)
set -eu
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
if ls .device/wheels/*.whl >/dev/null 2>&1; then
    # Pure-Python wheels unpacked as they are (no pip needed, no index reached)
    python -c "import sys, zipfile; [zipfile.ZipFile(w).extractall('.device/site') for w in sys.argv[1:]]" \
        .device/wheels/*.whl
    export PYTHONPATH="$PWD/.device/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" \
    | tee "$OUT/versions.txt"
cd scripts
python gpu_bench.py --json "$OUT/gpu-bench.json" --markdown "$OUT/gpu-bench.md" --deadline-seconds 400 ${GPU_BENCH_ARGS:-} \
    2>&1 | tee "$OUT/gpu-bench.log"
