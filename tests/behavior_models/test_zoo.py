import torch

from behavior_models.data import load_transitions
from behavior_models.gaussian import GaussianBehaviorModel, GaussianConfig
from behavior_models.plotting import plot_model
from behavior_models.zoo import evaluate
from tests.helpers import write_conditional_gaussian_dataset


def test_evaluate_and_plot_draw_the_same_samples_each_time_and_leave_the_callers_rng_alone(tmp_path):
    """Both used to call torch.manual_seed(seed) on the caller's global generator."""
    write_conditional_gaussian_dataset("test/zoo-eval-v0", episodes=10, steps=20)
    data = load_transitions("test/zoo-eval-v0")
    model = GaussianBehaviorModel.fit(data, GaussianConfig(steps=20, batch_size=32, hidden=(8,)), progress=False)
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = evaluate(model, data, max_points=50, num_samples=3)
    plot_model(model, data, tmp_path / "model.png", num_samples=20, resolution=8)
    assert torch.equal(torch.rand(4), expected)
    assert evaluate(model, data, max_points=50, num_samples=3)["samples"] == first["samples"]
