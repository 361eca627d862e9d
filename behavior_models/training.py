"""The one fit loop every backend uses: minibatches on the device, EMA, progress, checkpoints.

``fit_model`` writes into ``out_dir``:

* ``checkpoint.pt`` at step 0 and every ``checkpoint_every`` steps (atomically): weights,
  optimiser and EMA state, RNG states and the step, so ``resume=True`` continues an interrupted
  fit exactly;
* ``curve.csv``, the logged losses, as the fit goes (:mod:`behavior_models.metrics`), and
  the same as TensorBoard events under ``tb/`` when TensorBoard is installed;
* at the end ``weights.pt``, ``config.json`` and ``model.json`` (normalisation, calibrated
  support threshold, dataset fingerprint).

An existing directory is never silently overwritten: a finished or different run is refused
unless ``force=True``; an interrupted one needs ``resume=True`` (or ``force``).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from behavior_models.base import (
    CHECKPOINT_FILE, CONFIG_FILE, CURVE_FILE, MODEL_FILE, WEIGHTS_FILE, BehaviorModel, BehaviorModelConfig,
)
from behavior_models.data.transitions import NormalizationStats, Transitions
from behavior_models.errors import ArtefactMismatchError
from behavior_models.io import (atomic_path, config_to_dict, contents, dict_changes, load_torch_artefact,
                                remove_for_restart)
from behavior_models.metrics import TENSORBOARD_DIR, MetricsLogger, refuse_non_finite


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def flush_denormals() -> None:
    """Flush denormal floats to zero on the CPU (process-wide; no effect on CUDA).

    Adam's second-moment average decays geometrically for parameters whose gradient is
    (nearly) always zero, e.g. behind a dead ReLU, and within a few thousand steps reaches the
    denormal range (< 1.2e-38), which x86 CPUs process in microcode: measured here, the fused
    Adam step of a 256x256 BC actor went from 126 us to 760 us once that happened. Values that
    small are zero for every purpose of training."""
    torch.set_flush_denormal(True)


def prepare_tensors(model: BehaviorModel, transitions: Transitions, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised observations and boundary-clipped actions, as tensors on ``device``."""
    delta = model.config.boundary_delta
    obs = torch.as_tensor(transitions.observations, dtype=torch.float32, device=device)
    act = torch.as_tensor(transitions.actions, dtype=torch.float32, device=device)
    return model.normalize(obs), act.clamp(-1.0 + delta, 1.0 - delta)


# Everything fit_model and save write into a run directory.
RUN_FILES = (CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE, CURVE_FILE, CHECKPOINT_FILE, TENSORBOARD_DIR)


def is_model_run(directory: Path) -> bool:
    """A `bm fit` run directory: a saved model or a fit checkpoint (config.json alone is not enough)."""
    return (directory / MODEL_FILE).exists() or (directory / CHECKPOINT_FILE).exists()


def refuse_unusable_out_dir(out_dir: Path, resume: bool, force: bool) -> None:
    """The refusals of an existing ``out_dir`` that need no dataset, so `bm fit` can make them before
    it builds or loads one (``--force`` replaces the run later, once the fit can start)."""
    if force or not out_dir.exists():
        return
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if (out_dir / MODEL_FILE).exists() and not (resume and checkpoint_path.exists()):
        raise ArtefactMismatchError(f"{out_dir} already holds a fitted model; pass --force to overwrite it "
                                    "or choose another --out")
    if not checkpoint_path.exists() and contents(out_dir):
        raise ArtefactMismatchError(f"{out_dir} exists and is not a behavior-model run; choose another --out")
    if checkpoint_path.exists() and not resume:
        raise ArtefactMismatchError(f"{out_dir} holds an interrupted fit; pass --resume to continue it or "
                                    "--force to start over")


def _check_out_dir(out_dir: Path, cls: type[BehaviorModel], config: BehaviorModelConfig,
                   transitions: Transitions, resume: bool, force: bool) -> dict[str, Any] | None:
    """Decide what to do with an existing ``out_dir``; return a checkpoint to resume or None."""
    if force:
        remove_for_restart(out_dir, RUN_FILES, is_model_run, "a behavior-model run (`bm fit`)")
    refuse_unusable_out_dir(out_dir, resume, force=False)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if not checkpoint_path.exists():
        return None
    checkpoint = load_torch_artefact(checkpoint_path, "pass --force to start the fit over")
    saved = json.loads(checkpoint["config_json"])
    wanted = config_to_dict(config)
    # The step budget may grow on resume (checked below); anything else must match.
    changes = dict_changes(saved, wanted, ignore=("steps",))
    if checkpoint["backend"] != cls.name:
        raise ArtefactMismatchError(f"{out_dir} holds a fit of backend {checkpoint['backend']}, not {cls.name}; resume "
                                    f"it with --model {checkpoint['backend']}, or choose another --out")
    if changes:
        raise ArtefactMismatchError(f"{out_dir} holds a fit made with other settings ({'; '.join(changes)}); resume "
                                    "with the same settings, or pass --force to start over")
    if checkpoint["dataset_fingerprint"] != transitions.fingerprint:
        raise ArtefactMismatchError(
            f"{out_dir} was fitted on dataset {checkpoint['dataset_id']} (fingerprint "
            f"{checkpoint['dataset_fingerprint']}), not on {transitions.dataset_id} (fingerprint "
            f"{transitions.fingerprint}); resume with the same dataset, or pass --force")
    if int(checkpoint["step"]) > config.steps:
        raise ArtefactMismatchError(
            f"{out_dir} was checkpointed at step {int(checkpoint['step'])}, beyond --steps {config.steps}; a budget "
            "may grow on resume, not shrink (the cosine schedule and the checkpoint depend on it). Resume with "
            f"--steps >= {int(checkpoint['step'])}, or pass --force to start over")
    return checkpoint


def recorded_steps(out_dir: str | Path) -> int | None:
    """The step budget of the fit whose checkpoint ``out_dir`` holds, or None if it holds none."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    checkpoint = load_torch_artefact(path, "pass --force to start the fit over")
    return int(json.loads(checkpoint["config_json"])["steps"])


def restore_generator(generator: torch.Generator, state: Tensor, source: str | Path) -> None:
    """Set a checkpoint's minibatch-generator state, refused with a clear message when the
    checkpoint was made on another kind of device: CPU and CUDA generator states are not
    interchangeable (5,056 bytes against 16), and torch's own error does not say so."""
    try:
        generator.set_state(state)
    except RuntimeError:
        raise ArtefactMismatchError(
            f"checkpoint {source} holds the random-number state of a generator on another device type than "
            f"{generator.device.type} (it was made on another device); resume with the --device it was made "
            "on") from None


def update_ema(ema: AveragedModel, model: nn.Module) -> None:
    """``ema.update_parameters(model)`` without a device synchronisation per call.

    AveragedModel keeps its step counter on the CPU and copies it to the device on every call
    (a blocking host-to-device copy, i.e. a stream sync on CUDA, every training step). Only its
    first call does something the counter is needed for (copying the weights); later calls
    apply the same ``multi_avg_fn`` directly, on the same tensors, grouped by device and dtype
    as AveragedModel groups them."""
    if int(ema.n_averaged) == 0:  # a CPU tensor: no device involved
        ema.update_parameters(model)
        return
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
    pairs = zip(itertools.chain(ema.module.parameters(), ema.module.buffers()),
                itertools.chain(model.parameters(), model.buffers()), strict=True)
    for averaged, current in pairs:
        group = groups.setdefault((averaged.device, averaged.dtype), ([], []))
        group[0].append(averaged.detach())
        group[1].append(current.detach().to(averaged.device))
    for averaged_list, current_list in groups.values():
        ema.multi_avg_fn(averaged_list, current_list, ema.n_averaged)
    ema.n_averaged += 1

def fit_model(cls: type[BehaviorModel], transitions: Transitions, config: BehaviorModelConfig, *,
              out_dir: str | Path | None = None, device: str | torch.device = "cpu", resume: bool = False,
              force: bool = False, progress: bool = True) -> BehaviorModel:
    """Fit a ``cls`` model on ``transitions``; see the module docstring for what is written."""
    device = torch.device(device)
    transitions.require_unit_action_box()
    out_dir = Path(out_dir) if out_dir is not None else None

    seed_everything(config.seed)
    flush_denormals()
    train, held_out = transitions.split_episodes(config.holdout_fraction, seed=config.seed)
    stats = (train.state_stats(config.state_eps) if config.normalize_states
             else NormalizationStats.identity(transitions.obs_dim))
    # Built before out_dir is looked at: a backend refuses some options only here (the CVAE's
    # estimator, the flow's transform), and --force must not delete a run for a fit that cannot start.
    model = cls(transitions.obs_dim, transitions.act_dim, config)
    checkpoint = _check_out_dir(out_dir, cls, config, transitions, resume, force) if out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)  # an unusable path fails now, not at the first checkpoint
    model.set_normalization(stats)
    model.dataset_id, model.dataset_fingerprint = transitions.dataset_id, transitions.fingerprint
    model.to(device).train()
    optimizers = model.make_optimizers()
    # Read before a checkpoint overwrites the optimisers' (already decayed) learning rates.
    base_lrs = {name: [group["lr"] for group in opt.param_groups] for name, opt in optimizers.items()}
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
           if config.ema_decay > 0 else None)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    log = MetricsLogger(out_dir / CURVE_FILE if out_dir else None, out_dir / TENSORBOARD_DIR if out_dir else None)
    start_step = 0

    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][name])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        restore_generator(generator, checkpoint["generator"], out_dir / CHECKPOINT_FILE)
        torch.set_rng_state(checkpoint["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        log.csv.from_csv(checkpoint["curve_csv"])
        start_step = int(checkpoint["step"])

    obs, act = prepare_tensors(model, train, device)
    size = obs.shape[0]
    saved_through = start_step if out_dir is not None else None  # the newest checkpoint's step

    def save_checkpoint(step: int) -> None:
        nonlocal saved_through
        payload = {
            "backend": cls.name, "config_json": json.dumps(config_to_dict(config)), "step": step,
            "dataset_id": transitions.dataset_id, "dataset_fingerprint": transitions.fingerprint,
            "model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "ema": ema.state_dict() if ema is not None else {}, "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(), "curve_csv": log.csv.to_csv(),
        }
        if device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(device)
        with atomic_path(out_dir / CHECKPOINT_FILE) as tmp:
            torch.save(payload, tmp)
        log.flush()
        saved_through = step

    if out_dir is not None and checkpoint is None:
        # At step 0 too, before anything else is written (the log's files come next): a fit
        # interrupted before its first periodic checkpoint resumes, to its recorded budget and with
        # its settings checked, instead of leaving a directory no option would take.
        save_checkpoint(0)
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, disable=not progress,
               desc=f"fit {cls.name}", dynamic_ncols=True)
    try:
        log.start(start_step)
        for step in bar:
            factor = cosine_factor(step, config.steps, config.lr_final_fraction)
            for name, optimizer in optimizers.items():
                for group, base_lr in zip(optimizer.param_groups, base_lrs[name]):
                    group["lr"] = base_lr * factor
            index = torch.randint(size, (config.batch_size,), device=device, generator=generator)
            metrics = model.training_step(obs[index], act[index], step, optimizers)
            if ema is not None:
                update_ema(ema, model)
            if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                values = {k: float(v) for k, v in metrics.items()}
                log.record(step + 1, values)
                refuse_non_finite(step + 1, values, saved_through,
                                  "Fit again with a lower --lr (and --force); --resume would repeat the same steps.")
                bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            if out_dir is not None and (step + 1) % config.checkpoint_every == 0 and step + 1 < config.steps:
                save_checkpoint(step + 1)
        if out_dir is not None:
            save_checkpoint(config.steps)  # raw weights: a later --resume with a larger --steps continues
    finally:  # also when interrupted: rows past the checkpoint are replaced on resume
        bar.close()
        log.close()

    if ema is not None:
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    if len(held_out):
        model.calibrate(held_out)
    if out_dir is not None:
        model.save(out_dir)
    return model


def cosine_factor(step: int, total: int, final_fraction: float) -> float:
    """Learning-rate multiplier: 1 at step 0, ``final_fraction`` at ``total``, cosine between."""
    progress = min(step / max(total, 1), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
