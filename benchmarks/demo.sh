#!/usr/bin/env bash
# `make demo`: the main job on the built-in default dataset, end to end.
# Each stage is a plain `bm`/`rl` command a researcher would type.
set -euo pipefail
OUT=${DEMO_OUT:-demo_output}
mkdir -p "$OUT"
DATASET=${DEMO_DATASET:-pointmaze-umaze-biased}

echo "== 1. the built-in default dataset: real PointMaze UMaze episodes (planner + DASCO x-bucketed noise and bias),"
echo "      written with minari.create_dataset_from_buffers (kept if already built; about 20 s on an idle core)"
bm datasets make "$DATASET"
echo "== 2. load it through the Minari code path and describe it"
bm datasets info "$DATASET"
