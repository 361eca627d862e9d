"""Every algorithm's target networks follow the polyak rule target <- (1 - tau) target + tau online
after an update (ARQ App. A.2: polyak 0.995, i.e. tau = 0.005; TD3 / BEAR / DASCO: tau = 0.005).

The value tests of test_golden.py perturb the targets by hand, so they cannot see an update() that
never moves a target, moves it the wrong way or by 1 - tau: this checks the rule itself, member by
member, with tau = 0.3 so that tau and 1 - tau differ, against the snapshots taken around update().
"""

import copy

import numpy as np
import pytest
import torch

from rl.algos.arq import ARQ, ARQConfig
from rl.algos.base import BehaviorInputs
from rl.algos.dasco import DASCO, DASCOConfig
from rl.algos.spot import SPOT, SPOTConfig
from rl.algos.td3bc import TD3BC, TD3BCConfig
from tests.rl.algos.test_golden import (A, B, N, S, FakeTransitions, FixedBehavior, fixed_batch, gaussian_model,
                                        perturb)
from tests.rl.helpers import array_cache

TAU = 0.3


def build(name):
    rng = np.random.default_rng(0)
    if name == "arq":
        candidates = rng.uniform(-1, 1, size=(2 * B, N, A)).astype(np.float32)
        cache = array_cache(FakeTransitions(), candidates)
        return ARQ(ARQConfig(hidden=(8,), actor_hidden=(8,), tau=TAU), S, A, behavior=BehaviorInputs(cache=cache))
    if name == "td3bc":
        return TD3BC(TD3BCConfig(hidden=(8,), tau=TAU), S, A)
    if name == "spot":
        return SPOT(SPOTConfig(hidden=(8,), tau=TAU), S, A, behavior=BehaviorInputs(model=gaussian_model()))
    if name == "bear":
        from rl.algos.bear import BEAR, BEARConfig

        model = FixedBehavior(torch.as_tensor(rng.uniform(-1, 1, (B, 4, A)), dtype=torch.float32))
        return BEAR(BEARConfig(hidden=(8,), tau=TAU, warmup_steps=0), S, A, behavior=BehaviorInputs(model=model))
    return DASCO(DASCOConfig(critic_hidden=(8,), policy_hidden=(8,), gan_hidden=(8,), tau=TAU), S, A)


TARGETS = {"arq": ["critic"], "td3bc": ["critic", "actor"], "spot": ["critic", "actor"],
           "bear": ["critic", "actor"], "dasco": ["critic"]}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_each_update_moves_every_target_by_tau_towards_its_online_network(name):
    torch.manual_seed(0)
    algo = build(name)
    batch = fixed_batch(np.random.default_rng(1))
    for online in TARGETS[name]:
        perturb(getattr(algo, f"{online}_target"), scale=0.5)  # targets start apart from their networks
    if name in ("td3bc", "spot"):
        algo.update(batch)  # TD3 moves its targets on every second update only (policy_freq = 2)
    before = {online: copy.deepcopy(getattr(algo, f"{online}_target")) for online in TARGETS[name]}
    algo.update(batch)
    for online in TARGETS[name]:
        source = getattr(algo, online)
        pairs = zip(before[online].parameters(), getattr(algo, f"{online}_target").parameters(), source.parameters())
        for old, new, current in pairs:
            expected = (1 - TAU) * old.detach().double() + TAU * current.detach().double()
            assert (old - current).abs().max() > 0.05  # tau and 1 - tau give different answers
            np.testing.assert_allclose(new.detach().double().numpy(), expected.numpy(), rtol=0, atol=1e-6,
                                       err_msg=f"{name}: {online}_target")
