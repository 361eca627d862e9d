import math

import torch

from behavior_models.score.model import ScoreBehaviorModel, ScoreConfig
from behavior_models.score.network import NoiseNetwork, sinusoidal_embedding


def test_embedding_is_ddpms_and_any_width_works():
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    even = sinusoidal_embedding(t, 6, scale=1000.0)
    freqs = [math.exp(-math.log(10_000.0) * k / 3) for k in range(3)]
    expected = [[math.sin(1000.0 * s * f) for f in freqs] + [math.cos(1000.0 * s * f) for f in freqs] for s in t.tolist()]
    torch.testing.assert_close(even, torch.tensor(expected, dtype=torch.float64))
    # An odd width (a config's ``width`` is the embedding size) gets DDPM's zero pad, not a shape error.
    odd = sinusoidal_embedding(t, 7, scale=1000.0)
    assert odd.shape == (3, 7)
    torch.testing.assert_close(odd[:, :6], even)
    assert (odd[:, 6] == 0).all()
    network = NoiseNetwork(act_dim=3, obs_dim=2, width=63, blocks=1)
    assert network(torch.zeros(4, 3), torch.zeros(4, 2), torch.tensor(0.5)).shape == (4, 3)
    model = ScoreBehaviorModel(2, 3, ScoreConfig(width=33, blocks=1))
    assert model.grad_log_prob(torch.zeros(2, 2), torch.zeros(2, 3)).shape == (2, 3)
