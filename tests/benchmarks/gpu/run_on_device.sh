#!/bin/bash
# On the lent GPU machine, from the repository root: install the carried peer wheel (no deps: the
# rest is on that machine), run device_bench.py, keep its log and JSON under $OUT.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-.}"
if ls .gpu-carry/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .gpu-carry/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"
python3 tests/benchmarks/gpu/device_bench.py --out "$OUT" "$@" 2>&1 | tee "$OUT/device_bench.log"
