"""``bm datasets make NAME``: build a built-in recipe dataset (see ``rl.datasets``)."""

from __future__ import annotations

import click


@click.command("make")
@click.argument("name")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seeds every random stream of the recipe (env resets, action noise, evaluation).")
@click.option("--episodes", type=click.IntRange(min=1), default=None,
              help="Episodes to collect [default: 100, of --episode-steps steps each].")
@click.option("--episode-steps", type=click.IntRange(min=1), default=None,
              help="Steps per episode; the goal is re-sampled on arrival within an episode [default: 1000].")
@click.option("--reference-episodes", type=click.IntRange(min=1), default=None,
              help="Evaluation episodes per reference score (random policy, planner) [default: 50].")
@click.option("--force", is_flag=True, help="Rebuild even if the dataset is already on disk.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def datasets_make(name: str, seed: int, episodes: int | None, episode_steps: int | None,
                  reference_episodes: int | None, force: bool, quiet: bool) -> None:
    """Build the built-in recipe NAME as a Minari dataset under local/NAME-v0.

    \b
    Recipes (`bm datasets` lists them all):
      pointmaze-{umaze,medium,large}-expert    waypoint planner + PD controller
      pointmaze-*-noisy, pointmaze-*-biased    planner + x-bucketed noise / noise and bias (DASCO App. B)
      pointmaze-*-random                       uniform random actions
      pointmaze-*-expert-random-{10,30,50,70}  final X% of expert replaced by random (seed 001, App. A)

    A dataset already built from the same recipe is kept; one built with other options is
    refused unless --force. Any command given a recipe name that is not on disk builds it
    first with the defaults.
    """
    from behavior_models.data import describe, load_transitions
    from rl.datasets import make_dataset

    dataset_id = make_dataset(name, seed=seed, episodes=episodes, episode_steps=episode_steps,
                              reference_episodes=reference_episodes, progress=not quiet, overwrite=force)
    summary = describe(load_transitions(dataset_id))
    click.echo(f"{dataset_id}: {summary['transitions']} transitions in {summary['episodes']} episodes; "
               f"ref scores {summary['ref_min_score']:.2f} (random) / {summary['ref_max_score']:.2f} (planner); "
               f"boundary fraction {summary['action_boundary_fraction']:.4f}; fingerprint {summary['fingerprint']}")
