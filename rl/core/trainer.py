"""The one training loop every algorithm uses.

``train(...)`` builds a :class:`Run` (dataset on the device, behaviour artefacts, the
algorithm), then steps ``algorithm.update(buffer.sample(...))`` with a tqdm bar, logging
every ``log_every`` steps, evaluating every ``eval_every`` steps and checkpointing every
``checkpoint_every`` steps. A run directory holds:

* ``config.json``: algorithm, its frozen config, the run config, dataset id and fingerprint,
  behaviour artefacts (paths and fingerprints), state normalisation, library version;
* ``metrics.csv`` (always) and ``tb/`` (TensorBoard, when it is installed);
* ``checkpoints/step_XXXXXXXX.pt``: networks, optimisers, the minibatch generator's and torch's
  RNG states, the step, the log so far. ``resume=True`` continues from the newest one and
  reproduces the uninterrupted run bit for bit (same seed, same device, same thread count);
* ``summary.json``: the final evaluation (``normalized_score_mean``, ``normalized_score_std``,
  ``episodes``, ``steps``, ``steps_per_second``, ...).

Evaluation runs under a forked torch RNG seeded from (seed, step), so how often a run
evaluates never changes its training curve.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from behavior_models import __version__
from behavior_models.data import NormalizationStats, Transitions, load_transitions
from behavior_models.errors import ArtefactMismatchError, ConfigError, DatasetError, first_lines, require_at_least
from behavior_models.io import (atomic_path, config_from_dict, config_to_dict, contents, dict_changes,
                                load_torch_artefact, read_json_artefact, remove_for_restart, write_json_atomic)
from behavior_models.metrics import TENSORBOARD_DIR, MetricsLogger, refuse_non_finite
from behavior_models.training import flush_denormals, restore_generator
from rl.algos import algorithm_class
from rl.algos.base import AlgoConfig, Algorithm, BehaviorInputs
from rl.core import behavior as behavior_io
from rl.core.buffer import DeviceBuffer
from rl.core.evaluation import EVAL_MAZES, EvalResult, evaluate, flatten_batch, make_eval_env_factory, maze_layout_note
from rl.core.rewards import goal_switch_view, resolve_goal_switch, resolve_reward_transform, transform_rewards

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
# Run-config fields that may differ when resuming: they change neither the networks nor the
# training curve (evaluation runs under its own forked RNG). A longer ``steps`` is still refused
# where the algorithm derives config fields from the budget (BEAR's warm start, DASCO's
# instance-noise schedule): the resolved algorithm config then differs.
RESUMABLE_CHANGES = ("steps", "eval_every", "eval_episodes", "eval_parallel", "checkpoint_every", "keep_checkpoints")


@dataclass(frozen=True)
class RunConfig:
    """How long to train and how to log, evaluate and checkpoint; shared by every algorithm."""

    steps: int = 20_000
    seed: int = 0
    eval_every: int = 5_000  # evaluate every this many steps (0: only at the end)
    eval_episodes: int = 10  # episodes per evaluation (0: no environment evaluation at all)
    eval_deterministic: bool = True  # the policy's mean/argmax action rather than a sample
    eval_parallel: int = 10  # environments stepped side by side during evaluation
    eval_max_steps: int | None = None  # cap for environments without a time limit
    # The evaluation env's maze, or the one the data was collected in (rl.core.evaluation.EVAL_MAZES).
    eval_maze: str = "evaluation"
    log_every: int = 250
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 2  # newest checkpoints kept on disk

    def __post_init__(self) -> None:
        require_at_least(self, {"steps": 1, "log_every": 1, "checkpoint_every": 1, "keep_checkpoints": 1,
                                "eval_parallel": 1, "eval_max_steps": 1, "eval_every": 0, "eval_episodes": 0,
                                "seed": 0})
        if self.eval_maze not in EVAL_MAZES:
            raise ConfigError(f"RunConfig.eval_maze must be one of {EVAL_MAZES}, got {self.eval_maze!r}")


@dataclass
class Run:
    """Everything a run is built from: data on the device, behaviour inputs, the algorithm."""

    algorithm_name: str
    algo_config: AlgoConfig
    run_config: RunConfig
    transitions: Transitions
    stats: NormalizationStats
    buffer: DeviceBuffer
    algorithm: Algorithm
    behavior: BehaviorInputs
    device: torch.device
    checkpoint: str | None = None  # the file its weights came from (load_run), by name

    @classmethod
    def build(cls, algorithm_name: str, transitions: Transitions, algo_config: AlgoConfig | None = None,
              run_config: RunConfig | None = None, behavior: str | None = None, behavior_model: str | None = None,
              device: str | torch.device = "cpu", behavior_inputs: BehaviorInputs | None = None) -> "Run":
        """``behavior`` is the ``--behavior`` path; ``behavior_inputs`` passes already-open artefacts (tests)."""
        device = torch.device(device)
        flush_denormals()
        transitions.require_unit_action_box()
        algo_cls = algorithm_class(algorithm_name)
        run_config = run_config or RunConfig()
        algo_config = resolve_algo_config(algorithm_name, algo_config, transitions.dataset_id, run_config.steps)
        reward = algo_config.reward_transform
        transitions = goal_switch_view(transitions, algo_config.goal_switch)
        if behavior_model is not None and algo_cls.behavior_kind == "cache" and not algo_cls.needs_behavior_model(algo_config):
            raise ConfigError(f"{algorithm_name} with this config never samples a behavior model (only ARQ's "
                              "policy=implicit or policy=behavior does); drop --behavior-model")
        inputs = behavior_inputs or open_behavior(algo_cls, algo_config, transitions, behavior, behavior_model, device)
        stats = (transitions.state_stats(algo_config.state_eps) if algo_config.normalize_states
                 else NormalizationStats.identity(transitions.obs_dim))
        flat = np.flatnonzero(~(stats.std > 0))
        if len(flat):  # z-scoring would divide by zero: nan observations, nan losses, no error
            raise ConfigError(f"observation dimension(s) {flat.tolist()} of {transitions.dataset_id} are constant, so "
                              f"with state_eps={algo_config.state_eps} their std is 0; set state_eps > 0 (default "
                              "1e-3) or normalize_states=false")
        buffer = DeviceBuffer(transitions, transform_rewards(transitions, reward), stats, device)
        torch.manual_seed(run_config.seed)  # network initialisation
        algorithm = algo_cls(algo_config, transitions.obs_dim, transitions.act_dim, device, inputs).to(device)
        return cls(algorithm_name, algo_config, run_config, transitions, stats, buffer, algorithm, inputs, device)

    def config_record(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm_name,
            "algo": config_to_dict(self.algo_config),
            "run": config_to_dict(self.run_config),
            "dataset_id": self.transitions.dataset_id,
            "dataset_fingerprint": self.transitions.fingerprint,
            "behavior": behavior_io.describe_behavior(self.behavior.cache_path, self.behavior.model_dir),
            "algorithm_info": self.algorithm.describe(),
            "normalization": self.stats.to_dict(),
            "library_version": __version__,
        }

    def policy(self, deterministic: bool) -> Callable[[np.ndarray], np.ndarray]:
        """The policy as a function of raw flat observations [n, S] -> actions [n, A] (numpy)."""
        mean = torch.as_tensor(self.stats.mean, device=self.device)
        std = torch.as_tensor(self.stats.std, device=self.device)

        @torch.no_grad()
        def act(observations: np.ndarray) -> np.ndarray:
            raw = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
            return self.algorithm.act((raw - mean) / std, raw, deterministic).cpu().numpy()

        return act

    def check_evaluation(self) -> None:
        """Make one evaluation environment and check its observations have the dataset's size: a
        dataset that cannot be evaluated fails now, not at the first evaluation, eval_every steps
        into training and before the checkpoint of that step is written."""
        env = make_eval_env_factory(self.transitions.dataset_id, self.run_config.eval_maze)()
        try:
            size = flatten_batch([env.reset(seed=0)[0]]).shape[1]
        finally:
            env.close()
        if size != self.transitions.obs_dim:
            raise DatasetError(f"the evaluation environment of {self.transitions.dataset_id} observes {size} numbers "
                               f"per step, its dataset {self.transitions.obs_dim}; the policy cannot act in it. Train "
                               "with --eval-episodes 0, or rebuild the dataset with its environment")

    def evaluate(self, episodes: int, step: int = 0, deterministic: bool | None = None,
                 seed: int | None = None) -> EvalResult:
        """Roll the current policy out under a forked RNG seeded with ``seed``, by default one
        derived from (run seed, step), so training's periodic evaluations leave its RNG alone."""
        deterministic = self.run_config.eval_deterministic if deterministic is None else deterministic
        devices = [self.device] if self.device.type == "cuda" else []
        seed = self.run_config.seed * 1_000_003 + step if seed is None else seed
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return evaluate(self.policy(deterministic), self.transitions.dataset_id, self.transitions.info, episodes,
                            seed=seed % (2**31), parallel=self.run_config.eval_parallel,
                            max_steps=self.run_config.eval_max_steps, maze=self.run_config.eval_maze)

    def evaluation_notes(self) -> list[str]:
        """What the user must know about the environment this run is evaluated in."""
        if self.run_config.eval_maze != "evaluation":
            return []
        note = maze_layout_note(self.transitions.dataset_id)
        return [note] if note else []


def open_behavior(algo_cls: type[Algorithm], config: AlgoConfig, transitions: Transitions, behavior: str | None,
                  behavior_model: str | None, device: torch.device) -> BehaviorInputs:
    """Open ``--behavior`` (and ``--behavior-model``) as the algorithm needs them, or refuse."""
    wanted = algo_cls.behavior_kind
    kind = behavior_io.artefact_kind(behavior) if behavior is not None else None
    how = {"cache": "a sample cache (.npz from `bm sample-cache`)",
           "model": "a behavior-model directory (from `bm fit`)"}
    if wanted == "none":
        if behavior is not None or behavior_model is not None:
            raise ConfigError(f"{algo_cls.name} uses no behavior model; drop --behavior/--behavior-model")
        return BehaviorInputs()
    if kind is None:
        raise ConfigError(f"{algo_cls.name} needs --behavior: {how[wanted]}")
    if kind != wanted:
        raise ConfigError(f"{algo_cls.name} needs --behavior to be {how[wanted]}, but {behavior} is {how[kind]}"
                          + (". Build a cache from it with `bm sample-cache`." if wanted == "cache" else "."))
    if wanted == "model":
        if behavior_model is not None:
            raise ConfigError(f"{algo_cls.name} takes its behavior model as --behavior; drop --behavior-model")
        return BehaviorInputs(model=behavior_io.load_model(behavior, transitions, device), model_dir=str(behavior))
    cache = behavior_io.load_cache(behavior, transitions, device)
    model_dir = behavior_model
    if model_dir is not None:
        if not cache.model_matches(model_dir):
            raise ArtefactMismatchError(
                f"--behavior-model {model_dir} is not the model the cache {behavior} was drawn from (fingerprint "
                f"{cache.metadata.get('model_fingerprint')}, drawn from {cache.metadata.get('model_dir')}); the "
                "implicit policy must sample the model whose candidates Q was trained on")
    if model_dir is None and algo_cls.needs_behavior_model(config):
        model_dir = cache.metadata.get("model_dir")
        if not model_dir or not Path(model_dir).is_dir():
            raise ConfigError(f"{algo_cls.name} with this config samples the behavior model at act time, and the "
                              f"cache's metadata names no model directory that exists ({model_dir!r}); pass "
                              "--behavior-model DIR")
        if not cache.model_matches(model_dir):
            raise ArtefactMismatchError(f"the behavior model in {model_dir} changed since the cache {behavior} was "
                                        "drawn from it; rebuild the cache, or pass --behavior-model DIR explicitly")
    model = behavior_io.load_model(model_dir, transitions, device) if model_dir is not None else None
    return BehaviorInputs(cache=cache, model=model, cache_path=str(behavior), model_dir=model_dir)


def resolve_algo_config(algorithm_name: str, algo_config: AlgoConfig | None, dataset_id: str, steps: int) -> AlgoConfig:
    """The config a run of ``algorithm_name`` on ``dataset_id`` for ``steps`` steps trains with, as
    config.json records it: ``reward_transform="auto"``, ``goal_switch="auto"`` and the algorithm's
    dataset- and budget-dependent fields (``Algorithm.resolve_config``) resolved."""
    algo_cls = algorithm_class(algorithm_name)
    algo_config = algo_config or algo_cls.config_class()
    if not isinstance(algo_config, algo_cls.config_class):
        raise ConfigError(f"{algorithm_name} needs a {algo_cls.config_class.__name__}, got {type(algo_config).__name__}")
    reward = resolve_reward_transform(algo_config.reward_transform, dataset_id, algo_cls.locomotion_reward)
    goal_switch = resolve_goal_switch(algo_config.goal_switch, dataset_id)
    return algo_cls.resolve_config(dataclasses.replace(algo_config, reward_transform=reward, goal_switch=goal_switch),
                                   dataset_id, steps)


# Algorithm-config fields added after runs were first recorded, with the value such runs trained
# with: a record without the field is read as having it (if its algorithm's config has the field).
FIELDS_ADDED_SINCE = {
    "goal_switch": "keep",
    # TD3's family: nn.Linear's initialisation and no dropout, whatever SPOT now resolves per domain
    "actor_head_init": 0.0, "critic_head_init": 0.0, "actor_dropout": 0.0,
}


# Run-config fields added after runs were first recorded, with the value such runs ran with.
RUN_FIELDS_ADDED_SINCE = {"eval_maze": "evaluation"}


def recorded_algo_config(record: dict[str, Any]) -> dict[str, Any]:
    """The ``algo`` section of a run record, with ``FIELDS_ADDED_SINCE`` filled in where missing."""
    fields = {field.name for field in dataclasses.fields(algorithm_class(record["algorithm"]).config_class)}
    added = {name: value for name, value in FIELDS_ADDED_SINCE.items() if name in fields}
    return {**added, **record.get("algo", {})}


def settings_changes(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """How the run record ``wanted`` (config.json's layout) differs from the recorded ``saved`` in
    what it trains: algorithm, dataset, algorithm config, run config (but for
    ``RESUMABLE_CHANGES``) and, where ``wanted`` has them, the behaviour artefacts. [] if the same."""
    if saved.get("algorithm") != wanted["algorithm"]:  # its every config field would differ too: say just this
        return [f"algorithm: {saved.get('algorithm')!r} -> {wanted['algorithm']!r}"]
    changes = []
    if saved.get("dataset_fingerprint") != wanted["dataset_fingerprint"]:
        changes.append(f"dataset_fingerprint: {saved.get('dataset_fingerprint')!r} -> {wanted['dataset_fingerprint']!r}")
    for section, allowed in (("algo", ()), ("run", RESUMABLE_CHANGES)):
        old = recorded_algo_config(saved) if section == "algo" else {**RUN_FIELDS_ADDED_SINCE, **saved.get(section, {})}
        new = wanted[section]
        changes += dict_changes(old, new, ignore=allowed, prefix=f"{section}.")
    if "behavior" in wanted:
        changes += behavior_changes(saved.get("behavior") or {}, wanted["behavior"])
    return changes


def behavior_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How the behaviour artefacts differ from those a run recorded (by content, not by path:
    a moved cache is the same cache; a rebuilt one at the same path is not)."""
    changes = []
    for kind in ("cache", "model_dir"):
        old, new = saved.get(kind) or {}, current.get(kind) or {}
        if old.get("fingerprint") != new.get("fingerprint"):
            changes.append(f"behavior {kind}: {old.get('path')} (fingerprint {old.get('fingerprint')}) -> "
                           f"{new.get('path')} (fingerprint {new.get('fingerprint')})")
    return changes


# ---------------------------------------------------------------------------- checkpoints
def checkpoint_paths(out_dir: Path) -> list[Path]:
    return sorted((out_dir / CHECKPOINT_DIR).glob("step_*.pt"))


# Everything rl train, rl eval and benchmarks/offline_rl.py write into a run directory.
RUN_ENTRIES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_DIR, TENSORBOARD_DIR, "eval*.json", "final_eval*.json")


def acting_label(acting: dict[str, Any]) -> str:
    """``policy=implicit,implicit_samples=3``: names the result files of a run scored acting so
    (``eval[...].json``, the benchmark's ``final_eval[...].json``), one file per way of acting."""
    return ",".join(f"{key}={value}" for key, value in acting.items())


def is_rl_run(directory: Path) -> bool:
    """An `rl train` run directory: its config.json is a run record (a `bm fit` model's is not)."""
    try:
        return "algorithm" in json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False


def refuse_a_damaged_run_record(directory: Path) -> None:
    """Refuse ``directory`` with the damaged-file error if its config.json exists but is not readable JSON: such a
    directory is neither called another kind of run nor wiped by --force (``remove_for_restart``)."""
    if (directory / CONFIG_FILE).is_file():
        read_json_artefact(directory / CONFIG_FILE, f"restore it, or delete {directory} yourself to start over")


def refuse_existing_run(out_dir: Path, resume: bool, force: bool) -> None:
    """Refuse an ``out_dir`` that already holds a run, unless resuming or starting over, and one
    that holds anything else (``--force`` refuses it too, see ``remove_for_restart``). Cheap:
    :func:`train` calls it before loading the dataset and the behaviour artefacts."""
    if force or not out_dir.is_dir() or not contents(out_dir):
        return
    if not is_rl_run(out_dir):
        refuse_a_damaged_run_record(out_dir)
        what = " (it is a `bm fit` model directory)" if (out_dir / "model.json").exists() else ""
        raise ArtefactMismatchError(f"{out_dir} is not an `rl train` run{what}; choose another --out")
    if resume:
        return
    checkpoints = checkpoint_paths(out_dir)
    where = f" (checkpoint {checkpoints[-1].name})" if checkpoints else ""
    raise ArtefactMismatchError(f"{out_dir} already holds a run{where}; pass --resume to continue it, --force "
                                "to start over, or choose another --out")


def load_algorithm_state(algorithm: Algorithm, state: dict[str, Any], source: str) -> None:
    """Load networks and optimisers, refusing a checkpoint of other shapes with a clear message."""
    try:
        algorithm.load_state_dict(state["algorithm"])
        algorithm.load_optimizer_state(state["optimizers"])
    except (RuntimeError, KeyError, ValueError) as error:
        raise ArtefactMismatchError(
            f"checkpoint {source} does not fit this {algorithm.name} run (networks or optimisers of another shape or "
            f"kind: {first_lines(error)}); it was made with another dataset or config. Start a new --out, or resume with the "
            "settings it was made with.") from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    return load_torch_artefact(path, f"delete it to fall back on the run's previous checkpoint (if {path.parent} "
                                     "holds one), or pass --force to start the run over")


class Trainer:
    """Runs, logs, evaluates and checkpoints a :class:`Run` in ``out_dir``."""

    def __init__(self, run: Run, out_dir: str | Path, resume: bool = False, force: bool = False,
                 progress: bool = True, echo: Callable[[str], None] = print) -> None:
        self.run, self.out_dir, self.progress, self.echo = run, Path(out_dir), progress, echo
        self.log = MetricsLogger(self.out_dir / METRICS_FILE, self.out_dir / TENSORBOARD_DIR)
        self.evals: list[dict[str, Any]] = []
        self.start_step, self.train_seconds = 0, 0.0
        self.saved_through: int | None = None  # the newest checkpoint's step
        self.generator = torch.Generator(device=run.device)
        self.generator.manual_seed(run.run_config.seed)
        if run.run_config.eval_episodes:  # before the run directory is made, and before any training
            run.check_evaluation()
        # Built once: it fingerprints the cache and model directory (a pass over every byte).
        record = run.config_record()
        checkpoint = self._prepare_out_dir(resume, force, record)
        self.finished: dict[str, Any] | None = None  # the summary of a run resumed at the budget it finished
        if checkpoint is not None:
            self._restore(checkpoint)
            self.finished = self._summary_at_this_budget()
        if self.finished is None:  # a finished run keeps the record of the settings it ran with
            write_json_atomic(self.out_dir / CONFIG_FILE, record)

    # -------------------------------------------------------------- directory and resume
    def _prepare_out_dir(self, resume: bool, force: bool, wanted: dict[str, Any]) -> dict[str, Any] | None:
        if force:
            remove_for_restart(self.out_dir, RUN_ENTRIES, is_rl_run, "an `rl train` run")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        refuse_existing_run(self.out_dir, resume, force=False)
        checkpoints = checkpoint_paths(self.out_dir)
        if not checkpoints:
            return None
        saved = json.loads((self.out_dir / CONFIG_FILE).read_text())
        changes = settings_changes(saved, wanted)
        if changes:
            derived = self._budget_derived_changes(saved)
            keep = (f"; {self.run.algorithm_name} derives {', '.join(derived)} from --steps, so to continue this run "
                    f"with --steps {self.run.run_config.steps} keep the recorded values with "
                    + " ".join(f"--set {key}={value}" for key, value in derived.items()) if derived else "")
            raise ArtefactMismatchError(
                f"{self.out_dir} holds a run made with other settings (these differ: {'; '.join(changes)}){keep}; resume "
                "with the same algorithm, dataset and options, or start a new --out")
        return read_checkpoint(checkpoints[-1]) | {"_path": str(checkpoints[-1])}

    def _budget_derived_changes(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The algorithm-config fields that differ from the recorded run only because the step
        budget did (BEAR's warm start, DASCO's anneal), with their recorded values."""
        old_steps, new_steps = saved.get("run", {}).get("steps"), self.run.run_config.steps
        config, dataset_id = self.run.algo_config, self.run.transitions.dataset_id
        resolve = type(self.run.algorithm).resolve_config
        if not isinstance(old_steps, int) or old_steps == new_steps:
            return {}
        derived = {}
        for key, old in saved.get("algo", {}).items():
            if not hasattr(config, key) or getattr(config, key) == old or not isinstance(old, (int, float)):
                continue
            try:  # left unset, would it resolve to the recorded value under the recorded budget, and to this one now?
                unset = dataclasses.replace(config, **{key: None})
                then, now = resolve(unset, dataset_id, old_steps), resolve(unset, dataset_id, new_steps)
            except (TypeError, ValueError, ConfigError):  # a field that cannot be unset is not derived
                continue
            if getattr(then, key) == old and getattr(now, key) == getattr(config, key):
                derived[key] = old
        return derived

    def _summary_at_this_budget(self) -> dict[str, Any] | None:
        """The summary of a run that already trained ``steps`` steps, or None.

        A budget below the checkpoint's step is refused (it would relabel a longer run as a shorter
        one). A finished run resumed for more steps is no longer finished: its summary.json (of the
        shorter budget) goes, so that an interruption cannot leave it describing newer checkpoints."""
        steps, path = self.run.run_config.steps, self.out_dir / SUMMARY_FILE
        if self.start_step > steps:
            raise ArtefactMismatchError(
                f"{self.out_dir} has trained {self.start_step} steps, more than --steps {steps}; resume with --steps "
                f">= {self.start_step}, or score it with `rl eval --run {self.out_dir}`")
        if not path.is_file():
            return None
        summary = json.loads(path.read_text())
        if summary.get("steps") != steps:
            path.unlink()
            return None
        return summary if self.start_step == steps else None

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        load_algorithm_state(self.run.algorithm, checkpoint, checkpoint["_path"])
        restore_generator(self.generator, checkpoint["generator"], checkpoint["_path"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if self.run.device.type == "cuda" and "cuda_rng" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], self.run.device)
        self.start_step = self.saved_through = int(checkpoint["step"])
        self.train_seconds = float(checkpoint["train_seconds"])
        self.evals = json.loads(checkpoint["evals_json"])
        self.log.csv.from_csv(checkpoint["metrics_csv"])
        self.echo(f"resuming {self.out_dir} from step {self.start_step}")

    def _save_checkpoint(self, step: int) -> None:
        algorithm = self.run.algorithm
        payload = {
            "step": step, "algorithm_name": self.run.algorithm_name,
            "algorithm": algorithm.state_dict(), "optimizers": algorithm.optimizer_state(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds, "metrics_csv": self.log.csv.to_csv(),
            "evals_json": json.dumps(self.evals), "dataset_fingerprint": self.run.transitions.fingerprint,
        }
        if self.run.device.type == "cuda":
            payload["cuda_rng"] = torch.cuda.get_rng_state(self.run.device)
        path = self.out_dir / CHECKPOINT_DIR / f"step_{step:08d}.pt"
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        self.saved_through = step
        self.log.flush()
        for old in checkpoint_paths(self.out_dir)[:-max(1, self.run.run_config.keep_checkpoints)]:
            old.unlink()

    # -------------------------------------------------------------- logging
    def _evaluate(self, step: int, episodes: int) -> EvalResult:
        result = self.run.evaluate(episodes, step)
        summary = result.summary()
        self.evals.append({"step": step, **summary})
        self.log.record(step, {"eval/normalized_score_mean": summary["normalized_score_mean"],
                               "eval/normalized_score_std": summary["normalized_score_std"],
                               "eval/return_mean": summary["return_mean"]})
        return result

    def _periodic_evaluation_due(self, step: int) -> bool:
        config = self.run.run_config
        return bool(config.eval_episodes and config.eval_every and 0 < step < config.steps
                    and step % config.eval_every == 0)

    def _periodic_evaluation(self, step: int) -> None:
        result = self._evaluate(step, self.run.run_config.eval_episodes)
        label = "normalized_score" if result.score_kind == "normalized" else "return (no reference scores)"
        self.echo(f"step {step}: {label} {result.scores.mean():.2f} ± {result.scores.std():.2f}")

    # -------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        config = self.run.run_config
        if self.finished is not None:
            self.echo(f"{self.out_dir} already finished {config.steps} steps; nothing to train, its summary is kept "
                      f"(`rl eval --run {self.out_dir}` scores it again)")
            return self.finished
        self.log.start(self.start_step)
        try:
            summary = self._train_and_evaluate()
        finally:  # also when interrupted: rows past the checkpoint are replaced on resume
            self.log.close()
        write_json_atomic(self.out_dir / SUMMARY_FILE, summary)
        return summary

    def _train_and_evaluate(self) -> dict[str, Any]:
        """The step loop from ``start_step``, the final checkpoint and evaluation; the summary."""
        run, config = self.run, self.run.run_config
        algorithm, buffer = run.algorithm, run.buffer
        batch_size = run.algo_config.batch_size
        self.echo(f"{run.algorithm_name} on {run.transitions.dataset_id}: {len(buffer.data)} transitions, "
                  f"reward_transform={run.algo_config.reward_transform}, goal_switch={run.algo_config.goal_switch}"
                  f"{'' if run.transitions.info.goal_switch == run.algo_config.goal_switch else ' (no goal switches)'}, "
                  f"device={run.device}, out={self.out_dir}"
                  + "".join(f", {key}={value}" for key, value in run.algorithm.describe().items()))
        for warning in run.algorithm.warnings():
            self.echo(f"warning: {warning}")
        for note in run.evaluation_notes() if config.eval_episodes else []:
            self.echo(f"note: {note}")
        if self._periodic_evaluation_due(self.start_step) and not any(e["step"] == self.start_step for e in self.evals):
            self._periodic_evaluation(self.start_step)  # resumed from a checkpoint its evaluation did not reach
        bar = tqdm(range(self.start_step, config.steps), initial=self.start_step, total=config.steps,
                   disable=not self.progress, desc=f"train {run.algorithm_name}", dynamic_ncols=True)
        tic = time.perf_counter()
        try:
            for step in bar:
                metrics = algorithm.update(buffer.sample(batch_size, self.generator))
                done = step + 1
                if done % config.log_every == 0 or done == config.steps:
                    values = {key: float(value) for key, value in metrics.items()}  # the only host sync
                    self.log.record(done, values)
                    refuse_non_finite(done, values, self.saved_through, "Start over (--force) with other settings, "
                                      "e.g. a lower learning rate (--set); --resume would repeat the same steps.")
                    bar.set_postfix({k: f"{v:.3g}" for k, v in list(values.items())[:4]}, refresh=False)
                evaluation_due = self._periodic_evaluation_due(done)
                checkpoint_due = done % config.checkpoint_every == 0 and done < config.steps
                if evaluation_due or checkpoint_due:
                    self.train_seconds += time.perf_counter() - tic
                    if checkpoint_due:  # before evaluating: an evaluation interrupted loses no training
                        self._save_checkpoint(done)
                    if evaluation_due:
                        self._periodic_evaluation(done)
                        if checkpoint_due:
                            self._save_checkpoint(done)  # again, with the evaluation in its log
                    tic = time.perf_counter()
            self.train_seconds += time.perf_counter() - tic
        finally:
            bar.close()
        steps = config.steps
        self._save_checkpoint(steps)
        summary: dict[str, Any] = {
            "algorithm": run.algorithm_name, "dataset_id": run.transitions.dataset_id, "seed": config.seed,
            "steps": steps, "steps_per_second": steps / self.train_seconds if self.train_seconds > 0 else None,
            "train_seconds": self.train_seconds, "device": str(run.device),
        }
        if config.eval_episodes:
            result = self._evaluate(steps, config.eval_episodes)
            summary.update(result.summary(), eval_deterministic=config.eval_deterministic, eval_maze=config.eval_maze)
            self._save_checkpoint(steps)  # keeps the final evaluation in the checkpoint's log
        else:
            summary.update(normalized_score_mean=None, normalized_score_std=None, episodes=0, score_kind="none")
        return summary


def train(algorithm_name: str, dataset: str | Transitions, out_dir: str | Path, algo_config: AlgoConfig | None = None,
          run_config: RunConfig | None = None, behavior: str | None = None, behavior_model: str | None = None,
          device: str | torch.device = "cpu", resume: bool = False, force: bool = False, progress: bool = True,
          echo: Callable[[str], None] = print, behavior_inputs: BehaviorInputs | None = None) -> dict[str, Any]:
    """Train ``algorithm_name`` on ``dataset`` into ``out_dir``; returns the summary (also in summary.json)."""
    refuse_existing_run(Path(out_dir), resume, force)
    transitions = load_transitions(dataset) if isinstance(dataset, str) else dataset
    run = Run.build(algorithm_name, transitions, algo_config, run_config, behavior, behavior_model, device,
                    behavior_inputs=behavior_inputs)
    return Trainer(run, out_dir, resume=resume, force=force, progress=progress, echo=echo).train()


def read_run_record(run_dir: str | Path) -> dict[str, Any]:
    """The config.json a run directory holds (algorithm, configs, fingerprints), or a clear error."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ArtefactMismatchError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing (make one with `rl train`)")
    if not is_rl_run(Path(run_dir)):
        refuse_a_damaged_run_record(Path(run_dir))
        raise ArtefactMismatchError(f"{run_dir} is not an `rl train` run directory (its {CONFIG_FILE} is not a run "
                                    "record; a `bm fit` model directory?)")
    return json.loads(path.read_text())


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             behavior_inputs: BehaviorInputs | None = None, acting: dict[str, Any] | None = None) -> Run:
    """Rebuild a run from its directory with the weights of its newest checkpoint.

    ``acting`` changes acting fields of the algorithm's config (``Algorithm.acting_fields``; any
    other field is refused), e.g. ``{"policy": "implicit"}`` evaluates an ARQ run with Eq. 6's
    policy; a behavior model the new way of acting samples is opened through the cache's metadata."""
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    checkpoints = checkpoint_paths(run_dir)
    if not checkpoints:
        raise ArtefactMismatchError(f"{run_dir} has no checkpoint yet; train it first (`rl train ... --out {run_dir}`)")
    algo_cls = algorithm_class(record["algorithm"])
    transitions = load_transitions(record["dataset_id"])
    if transitions.fingerprint != record["dataset_fingerprint"]:
        raise ArtefactMismatchError(
            f"dataset {record['dataset_id']} changed since {run_dir} was trained (fingerprint "
            f"{transitions.fingerprint}, the run recorded {record['dataset_fingerprint']})")
    behavior = record["behavior"]
    cache_path = behavior["cache"]["path"] if behavior.get("cache") else None
    model_dir = behavior["model_dir"]["path"] if behavior.get("model_dir") else None
    gone = [path for path in (cache_path, model_dir) if path is not None and not Path(path).exists()]
    if behavior_inputs is None and gone:
        raise ArtefactMismatchError(f"{run_dir} was trained with the behaviour artefact(s) {gone}, which no longer "
                                    "exist; restore them (a copy at that path with the same content), or retrain")
    algo_config = config_from_dict(algo_cls.config_class, recorded_algo_config(record))
    transitions = goal_switch_view(transitions, algo_config.goal_switch)  # the view its cache was drawn for
    acting = dict(acting or {})
    acting_config = algo_cls.with_acting(algo_config, acting)
    if behavior_inputs is None:
        behavior_inputs = open_behavior(algo_cls, acting_config, transitions, cache_path or model_dir,
                                        model_dir if cache_path else None, torch.device(device))
        # Only what the run recorded: a model opened just to act otherwise is the one the cache was
        # drawn from (open_behavior checked its fingerprint against the cache's metadata).
        recorded_model = behavior_inputs.model_dir if model_dir else None
        changes = behavior_changes(behavior, behavior_io.describe_behavior(behavior_inputs.cache_path, recorded_model))
        if changes:
            raise ArtefactMismatchError(f"the behaviour artefacts of {run_dir} changed since it was trained "
                                        f"({'; '.join(changes)}); restore them, or retrain")
    run = Run.build(record["algorithm"], transitions, algo_config, config_from_dict(RunConfig, record["run"]),
                    device=device, behavior_inputs=behavior_inputs)
    load_algorithm_state(run.algorithm, read_checkpoint(checkpoints[-1]), str(checkpoints[-1]))
    run.checkpoint = checkpoints[-1].name  # not the newest by the time it is reported: the run may train on
    if acting:
        run.algorithm.set_acting(**acting)
        run.algo_config = run.algorithm.config
    return run
