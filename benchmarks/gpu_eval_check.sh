#!/usr/bin/env bash
# End-to-end `zeroshot eval` on a GPU: a random-weight SAM2.1-tiny at 512 px with 8 rounds of corrective clicks on
# a 2-subject phantom (T1, T2), then checks every row and that the image encoder ran once per volume per curve.
# Needs .whl/ (see gpu_check.sh). Output under $OUT (default /tmp/gpu-eval-check). Random weights: cost only.
set -eu
OUT=${OUT:-/tmp/gpu-eval-check}
mkdir -p "$OUT"
PY=${PY:-python3}
if ls .whl/*.whl > /dev/null 2>&1; then
    [ -d /tmp/site/sam2 ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
DEV=${DEV:-cuda}
SIZE=${SIZE:-512}
"$PY" -m zeroshot.cli phantom --out "$OUT/data" --cases 2 --seed 0 --no-montage > /dev/null
start=$(date +%s)
"$PY" -m zeroshot.cli eval --data "$OUT/data" --sequence T1 T2 --model "random:sam2.1_hiera_t@$SIZE" \
    --strategy box-mid --clicks 8 --device "$DEV" --out "$OUT/run" --no-progress --workers 1 | tail -8
echo "eval took $(($(date +%s) - start)) s"
"$PY" - "$OUT/run" <<'PY'
import json, pathlib, sys
import pandas as pd
run = pathlib.Path(sys.argv[1])
rows = pd.read_parquet(run / "results.parquet")
assert len(rows) == 2 * 2 * 9 and not rows.failed.any(), rows[rows.failed][["case_id", "round", "error"]]
for path in (run / "rows").rglob("round*.json"):
    record = json.loads(path.read_text())
    assert record["info"]["encoder_slices_total"] == len(record["slices"]["z"]), path
print("segment s per round (median):", rows.groupby("round").seconds_segment.median().round(3).to_dict())
print("prepare s (median):", round(rows.seconds_prepare.median(), 3))
print("device:", json.loads((run / "run.json").read_text()).get("invocations", [{}])[-1].get("device"))
print("OK: 36 rows, no failure, one encoder pass per volume per curve")
PY
