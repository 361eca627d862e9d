"""No update waits on the device: each algorithm's update() issues no operation that, on a GPU,
stops the host until the device has caught up (the training loops read metrics back only every
--log-every steps; rl/core/trainer.py).

Counted on CPU tensors by a TorchDispatchMode, which sees every aten call, also those inside
torch.distributions and nflows:
* a scalar read: .item(), float(t), bool(t), ``if t:`` (aten._local_scalar_dense);
* an output whose shape depends on the data: nonzero, masked_select, indexing with a bool mask;
* a tensor made from host data, torch.tensor(list): a copy that waits for the GPU's queue;
* unique, torch.equal, bincount and repeat_interleave by a tensor of counts.
(.tolist() and .numpy() reach no dispatch on CPU tensors, so they are not seen here.)

Not covered, by design: the spline flow (nflows' rational-quadratic transforms index with masks,
as behavior_models/flow.py says; the affine flow is covered) and a score-model ensemble (members
pick their rows with nonzero)."""

from __future__ import annotations

import collections
import dataclasses
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from behavior_models.registry import backend_class
from rl.algos import algorithm_class
from rl.algos.base import BehaviorInputs
from rl.core.trainer import Run, RunConfig
from tests.rl.helpers import random_cache

WAITS = {"_local_scalar_dense": "scalar read", "nonzero": "nonzero", "masked_select": "masked_select",
         "lift_fresh": "tensor from host data", "_unique2": "unique", "unique_dim": "unique",
         "unique_consecutive": "unique", "equal": "torch.equal", "bincount": "bincount"}


class HostWaits(TorchDispatchMode):
    """Counts the operations above, by kind and by the innermost frame of this repository."""

    def __init__(self) -> None:
        super().__init__()
        self.found: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        kind = WAITS.get(name)
        if kind is None and name == "repeat_interleave" and isinstance(args[0] if args else None, torch.Tensor) \
                and args[0].dtype != torch.bool and (kwargs or {}).get("output_size") is None \
                and func._overloadname in ("Tensor", "self_Tensor"):
            kind = "repeat_interleave by a tensor"  # its output size is read back
        if kind is None and name in ("index", "index_put", "index_put_") and len(args) > 1:
            indices = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                kind = "bool-mask indexing"
        if kind is not None:
            self.found[f"{kind} at {self._site()}"] += 1
        return func(*args, **(kwargs or {}))

    @staticmethod
    def _site() -> str:
        ours = [frame for frame in traceback.extract_stack()
                if "/site-packages/" not in frame.filename and "/tests/" not in frame.filename]
        return f"{ours[-1].filename}:{ours[-1].lineno}" if ours else "?"


def small_model(backend: str, obs_dim: int, act_dim: int, **fields):
    sizes = {"gaussian": {"hidden": (16, 16)}, "cvae": {"hidden": (16, 16)},
             "flow": {"hidden": 8, "num_transforms": 2, "transform": "affine"},
             "score": {"width": 16, "blocks": 1, "fast_steps": 3}}[backend]
    cls = backend_class(backend)
    return cls(obs_dim, act_dim, cls.config_class(**{**sizes, **fields})).requires_grad_(False).eval()


CASES = [
    ("bc", {}, None), ("td3bc", {}, None), ("td3bc++", {}, None), ("dasco", {}, None),
    ("spot", {}, ("gaussian", {})), ("spot", {}, ("cvae", {})), ("spot", {"cvae_estimator": "iw"}, ("cvae", {})),
    ("spot", {}, ("flow", {})), ("spot", {}, ("score", {})),
    ("arq", {"actor_type": "gaussian"}, "cache"), ("arq", {"actor_type": "deterministic"}, "cache"),
    ("arq", {"include_dataset_next_action": True}, "cache"),
    ("arq", {"q_target": "sarsa", "num_q": 1, "policy": "explicit"}, "cache"),
    ("bear", {}, ("cvae", {})), ("bear++", {}, ("gaussian", {})), ("bear", {}, ("score", {"default_sampler": "fast"})),
]


@pytest.mark.parametrize("name, fields, behavior", CASES, ids=lambda case: str(case))
def test_an_update_never_waits_for_the_device(name, fields, behavior, env_transitions):
    config_class = algorithm_class(name).config_class
    sizes = {field.name: (16, 16) for field in dataclasses.fields(config_class)
             if field.name in ("hidden", "actor_hidden", "critic_hidden", "policy_hidden", "gan_hidden")}
    warmup = {"warmup_steps": 1} if "warmup_steps" in config_class.__dataclass_fields__ else {}  # BEAR: past it
    config = config_class(batch_size=32, **sizes, **warmup, **fields)
    if behavior == "cache":
        inputs = BehaviorInputs(cache=random_cache(env_transitions))
    elif behavior is not None:
        inputs = BehaviorInputs(model=small_model(behavior[0], env_transitions.obs_dim, env_transitions.act_dim,
                                                  **behavior[1]))
    else:
        inputs = None
    run = Run.build(name, env_transitions, config, RunConfig(eval_episodes=0), behavior_inputs=inputs)
    generator = torch.Generator().manual_seed(0)
    batches = [run.buffer.sample(32, generator) for _ in range(11)]
    run.algorithm.update(batches[0])  # optimiser state made, warm start passed
    with HostWaits() as waits:  # updates 2-11: TD3's actor steps (every second), the gradient penalty (every fifth)
        for batch in batches[1:]:
            metrics = run.algorithm.update(batch)
    assert not waits.found, dict(waits.found)
    assert all(isinstance(value, (torch.Tensor, float)) for value in metrics.values())


def test_the_counter_sees_what_it_looks_for():
    values = torch.arange(6.0)
    with HostWaits() as waits:
        float(values.sum())
        values[values > 2]
        torch.nonzero(values)
        torch.tensor([1.0, 2.0])
        if values.any():
            pass
        torch.unique(values)
        values.long().bincount()
        values.repeat_interleave(torch.tensor([1, 2, 1, 1, 1, 1]))
        values.repeat_interleave(2)  # by a number: its size is known without reading the device
    kinds = collections.Counter(site.split(" at ")[0] for site in waits.found.elements())
    assert kinds == {"scalar read": 2, "bool-mask indexing": 1, "nonzero": 1, "tensor from host data": 2,
                     "unique": 1, "bincount": 1, "repeat_interleave by a tensor": 1}
