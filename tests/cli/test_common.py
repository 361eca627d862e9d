"""The shared --device option: a device torch cannot use here is a clear option error, not a traceback."""

import click
import pytest
import torch
from click.testing import CliRunner

from cli.bm import main as bm
from cli.common import device_option
from cli.rl import main as rl


@click.command()
@device_option()
def show_device(device):
    click.echo(repr(device))


def _device_commands(group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _device_commands(command, (*path, name))
        elif any(param.name == "device" for param in command.params):
            yield (*path, name)


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_every_device_option_refuses_an_unknown_device():
    paths = [(bm, path) for path in _device_commands(bm)] + [(rl, path) for path in _device_commands(rl)]
    assert {"fit", "eval", "plot", "sample-cache"} <= {path[-1] for _, path in paths}
    assert ("train", "bc") in [path for _, path in paths]
    for group, path in paths:
        result = CliRunner().invoke(group, [*path, "--device", "gpu"])
        assert result.exit_code == 2, (path, result.output)
        assert "'gpu' is not a torch device; use auto, cpu, cuda or cuda:N" in result.output, path
        assert "Traceback" not in result.output


def test_cuda_is_refused_when_torch_sees_no_gpu(monkeypatch):
    _no_cuda(monkeypatch)
    for command in (show_device, bm):
        args = ["--device", "cuda"] if command is show_device else ["fit", "--device", "cuda"]
        result = CliRunner().invoke(command, args)
        assert result.exit_code == 2 and "'cuda': this torch" in result.output and "sees no CUDA device; use cpu" in result.output


def test_a_cuda_index_beyond_the_visible_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    result = CliRunner().invoke(show_device, ["--device", "cuda:2"])
    assert result.exit_code == 2 and "there are 2 CUDA device(s), cuda:0 to cuda:1" in result.output
    accepted = CliRunner().invoke(show_device, ["--device", "cuda:1"])
    assert accepted.exit_code == 0 and accepted.output.strip() == "'cuda:1'"  # passed on as the text given


@pytest.mark.parametrize("value, message", [("cuda:x", "is not a torch device"), ("meta", "only CPU, CUDA and MPS")])
def test_malformed_or_unsupported_devices_are_refused(value, message):
    result = CliRunner().invoke(show_device, ["--device", value])
    assert result.exit_code == 2 and message in result.output


def test_mps_is_refused_where_it_is_not_available(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    result = CliRunner().invoke(show_device, ["--device", "mps"])
    assert result.exit_code == 2 and "MPS is not available" in result.output


def test_the_default_is_the_gpu_when_torch_sees_one_else_the_cpu(monkeypatch):
    _no_cuda(monkeypatch)
    for args in ([], ["--device", "auto"]):
        assert CliRunner().invoke(show_device, args).output.strip() == "'cpu'"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert CliRunner().invoke(show_device, []).output.strip() == "'cuda'"  # resolved here: runs record it
    assert CliRunner().invoke(show_device, ["--device", "cpu"]).output.strip() == "'cpu'"


def test_the_goal_switch_choices_are_the_library_views():
    from behavior_models.data.goals import GOAL_SWITCH_VIEWS
    from cli.common import GOAL_SWITCH_CHOICES

    assert GOAL_SWITCH_CHOICES == ("auto",) + GOAL_SWITCH_VIEWS
