#!/usr/bin/env bash
# `make demo`: the main job on the built-in default dataset, end to end.
# Each stage is a plain `bm`/`rl` command a researcher would type.
set -euo pipefail
OUT=${DEMO_OUT:-demo_output}
mkdir -p "$OUT"
DATASET=${DEMO_DATASET:-test/demo-gaussian-v0}

echo "== 1. a small real Minari dataset, written with minari.create_dataset_from_buffers"
python - "$DATASET" <<'PY'
import sys
import numpy as np
from gymnasium import spaces
from behavior_models.data import is_local, write_minari_dataset

dataset_id = sys.argv[1]
if not is_local(dataset_id):
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(20):
        obs = rng.normal(size=(51, 2)).astype(np.float32)
        act = np.tanh(0.5 * obs[:-1] + 0.1 * rng.normal(size=(50, 2))).astype(np.float32)
        episodes.append({"observations": obs, "actions": act, "rewards": -np.abs(act).sum(1),
                         "terminations": np.zeros(50, bool), "truncations": np.eye(50, dtype=bool)[-1]})
    write_minari_dataset(dataset_id, episodes, observation_space=spaces.Box(-np.inf, np.inf, (2,), np.float32),
                         action_space=spaces.Box(-1, 1, (2,), np.float32))
PY
echo "== 2. load it through the Minari code path and describe it"
bm datasets info "$DATASET"
