#!/usr/bin/env bash
# The GPU checks of the SAM2 segmenter in one short command (about 5 minutes on an H100, at most
# GPU_CHECK_BUDGET_S, default 360 s): MedSAM2's setting (SAM2.1-tiny at 512 px) with every engine,
# segment_many (K = 4) and the recipe's costs (hole filling on/off, 8-bit Pillow input vs float), the main job's
# throughput (benchmarks/sweep_speed.py: zeroshot eval end to end on 8 CrossPan-sized phantoms, one case at a time
# and 4 cases in flight), the cuda tests (engines, hole filling, numerics, threshold on the device), SAM2.1-tiny at
# 1024 px reference against lockstep. GPU_CHECK_LARGE=1 adds
# SAM2.1-large at 1024 px. Every step has its own time limit; a step that would start with under 20 s of the
# budget left is skipped and reported; a failing step is reported while the later steps still run.
#
#   bash benchmarks/gpu_check.sh            # from the repository root; needs .whl/ (see below)
#
# The GPU image lacks sam2, hydra-core, omegaconf, antlr4-python3-runtime, iopath and nibabel: build their wheels
# here first with `bash /work/shared/tools/device-wheels.sh .whl` and carry `.whl` along. All output goes to
# $OUT (if set, else /tmp/gpu-check): gpu_check.log, one JSON per benchmark, summary.txt (one line per step).
# Random weights throughout: the figures are speed, memory and engine agreement, never accuracy.
set -u

OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HYDRA_FULL_ERROR=1
PY=${PY:-python3}
deadline=$(($(date +%s) + ${GPU_CHECK_BUDGET_S:-360}))
failed=0
: > "$OUT/summary.txt"

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, record its exit status, never abort the script
    local name=$1 limit=$2 start rc left
    shift 2
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt 20 ]; then
        echo "=== $name: SKIPPED, ${left}s left of the budget"
        echo "$name skipped (out of time)" >> "$OUT/summary.txt"
        failed=$((failed + 1))
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "=== $name (limit ${limit}s): $*"
    start=$(date +%s)
    timeout --kill-after=5 "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $(($(date +%s) - start))s"
    echo "$name exit=$rc seconds=$(($(date +%s) - start))" >> "$OUT/summary.txt"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

echo "=== install wheels from .whl/ into /tmp/site"
if ls .whl/*.whl > /dev/null 2>&1 && timeout 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; then
    echo "install exit=0" >> "$OUT/summary.txt"
else
    echo "install FAILED (is .whl/ there? build it with device-wheels.sh)"
    echo "install exit=1" >> "$OUT/summary.txt"
    failed=$((failed + 1))
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

step versions 30 "$PY" -c "
import torch, sam2, hydra, zeroshot.segmenters.sam2_video as m
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print('device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
print('sam2 from', sam2.__file__, '| hydra', hydra.__version__)
"

bench() {  # bench NAME LIMIT_S ARGS...: the propagation benchmark on a 64-slice 256 x 256 phantom
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" benchmarks/propagation_speed.py --device "${BENCH_DEVICE:-cuda}" \
        --slices "${BENCH_SLICES:-64}" --height 256 --width 256 --json "$OUT/$name.json" "$@"
}
bench bench-tiny-512 100 --config sam2.1_hiera_t --image-size 512 --repeats 3 --engines reference,fast-serial,fast \
    --many 4 --recipe-costs
# one case at a time against 4 cases in flight (eval and engine); the unbatched eval is left out to stay in budget
step sweep-speed 150 "$PY" benchmarks/sweep_speed.py --device "${BENCH_DEVICE:-cuda}" \
    --cases "${SWEEP_CASES:-8}" --workers 4 --cases-in-flight 4 --skip eval-unbatched --json "$OUT/sweep-speed.json"
step pytest-cuda 100 "$PY" -m pytest -q -rA -s -m cuda -p no:cacheprovider tests/test_cuda.py \
    tests/test_hole_filling.py tests/test_runtime.py tests/test_mask_finishing.py
bench bench-tiny-1024 45 --config sam2.1_hiera_t --repeats 2 --engines reference,fast
if [ "${GPU_CHECK_LARGE:-0}" = 1 ]; then
    bench bench-large-1024 60 --config sam2.1_hiera_l --repeats 2 --engines reference,fast
fi

echo "=== summary ($failed failed step(s))"
cat "$OUT/summary.txt"
exit $((failed > 0))
