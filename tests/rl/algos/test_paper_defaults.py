"""Every config's defaults are the published values the seeds and ALGORITHMS.md give.

The update tests pass their hyperparameters explicitly, so a default edited by mistake (BEAR's
lambda, ARQ's polyak 0.995 written as tau, the ++ options' N = 5) would otherwise go unseen and
change every run made with the defaults. The per-dataset defaults (ARQ's K / lr / alpha, TD3+BC's
alpha, lambda_GP, SPOT's AntMaze settings, DASCO's w) are checked where they are resolved.
"""

import pytest

from rl.algos.arq import ARQConfig
from rl.algos.bear import BEARConfig
from rl.algos.dasco import DASCOConfig
from rl.algos.spot import SPOTConfig
from rl.algos.td3 import TD3Config
from rl.algos.td3bc import TD3BCConfig

PUBLISHED = {
    # Seed 002, App. A.2 and ALGORITHMS.md "ARQ": Q 2 x 256 (two of them), polyak 0.995, batch 512,
    # N = 30 samples; the dataset a' as a candidate is a deviation, off by default; the support mask on.
    ARQConfig: {"batch_size": 512, "tau": 0.005, "hidden": (256, 256), "num_q": 2, "implicit_samples": 30,
                "include_dataset_next_action": False, "use_support_mask": True, "gamma": 0.99},
    # TD3 (ALGORITHMS.md "SPOT": the base algorithm), shared by TD3+BC and SPOT.
    TD3Config: {"gamma": 0.99, "tau": 0.005, "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2,
                "actor_lr": 3e-4, "critic_lr": 3e-4, "batch_size": 256},
    # Seed 001, Sec. 4.1 and App. C.2: Eq. 8 with k = 1 at 16 random actions every N = 5 steps; off without ++.
    TD3BCConfig: {"gp_k": 1.0, "gp_actions": 16, "gp_every": 5, "gradient_penalty": 0.0,
                  "constraint_relaxation": False},
    # ALGORITHMS.md "BEAR": 10 target samples, 0.75 min + 0.25 max, sigma 20, eps 0.05, log alpha by Adam
    # 1e-3 clamped to [-5, 10], 40,000 warm-start steps, policy lr 1e-4 and Q lr 3e-4, 10 acting samples.
    BEARConfig: {"target_samples": 10, "target_lambda": 0.75, "mmd_sigma": 20.0,
                 "epsilon": 0.05, "alpha_lr": 1e-3, "log_alpha_min": -5.0, "log_alpha_max": 10.0,
                 "warmup_max_steps": 40_000, "actor_lr": 1e-4, "critic_lr": 3e-4, "tau": 0.005, "eval_samples": 10,
                 "gp_k": 1.0, "gp_actions": 16, "gp_every": 5},
    # Seed 000, App. C: Q 3 x 256, policy 4 x 256, GAN parts 1 x 750, Adam 3e-4, tau 0.005, instance noise
    # std 0.3 clamped to 0.3, w = 0.025 AntMaze / 1.0 locomotion.
    DASCOConfig: {"critic_hidden": (256, 256, 256), "policy_hidden": (256,) * 4, "gan_hidden": (750,), "lr": 3e-4,
                  "tau": 0.005, "instance_noise_std": 0.3, "instance_noise_clamp": 0.3, "w_maze": 0.025,
                  "w_locomotion": 1.0, "gamma": 0.99},
    # ALGORITHMS.md "SPOT" and "CVAE": the one-sample ELBO, lambda in SPOT's CVAE-loss units with beta = 0.5,
    # the TD3+BC Q normalisation.
    SPOTConfig: {"cvae_estimator": "elbo", "cvae_samples": 1, "cvae_kl_weight": 0.5, "lambda_units": "spot_cvae",
                 "q_normalization": True, "policy_noise": 0.2, "noise_clip": 0.5, "policy_freq": 2, "tau": 0.005},
}


@pytest.mark.parametrize("config_class", PUBLISHED, ids=lambda cls: cls.__name__)
def test_defaults_are_the_published_values(config_class):
    config = config_class()
    actual = {name: getattr(config, name) for name in PUBLISHED[config_class]}
    assert actual == PUBLISHED[config_class]
