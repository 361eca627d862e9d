"""``bm``: datasets and behavior models."""

from __future__ import annotations

import click

from cli.common import echo_json, ensure_dataset, root_group

main = root_group("bm", "Behavior models: datasets, fitting, evaluation, sampling caches.")


@main.group("datasets", invoke_without_command=True)
@click.pass_context
def datasets(ctx: click.Context) -> None:
    """List local Minari datasets, the name aliases and the built-in recipes.

    \b
    Subcommands:
      info ID    sizes, dims, returns, reference scores, boundary mass, fingerprint
      make NAME  build a built-in recipe (PointMaze expert/noisy/biased/random, contamination)
    """
    if ctx.invoked_subcommand is not None:
        return
    from behavior_models.data import ALIASES, list_local_datasets
    from behavior_models.data.minari_io import datasets_root

    local = list_local_datasets()
    click.echo(f"Local Minari datasets in {datasets_root()}:")
    for dataset_id in local or ["(none)"]:
        click.echo(f"  {dataset_id}")
    for kind, title in (("minari", "Aliases of stock Minari datasets"),
                        ("recipe", "Built-in recipes (built on first use, or by `bm datasets make NAME`)")):
        click.echo(f"\n{title}:")
        for entry in (e for e in ALIASES.values() if e.kind == kind):
            mark = "*" if entry.dataset_id in local else " "
            click.echo(f" {mark} {entry.name:38s} {entry.dataset_id:40s} {entry.description}")
    click.echo("\n* = on disk")


@datasets.command("info")
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def datasets_info(dataset: str, as_json: bool) -> None:
    """Summarise DATASET (an alias such as kitchen-mixed, or a Minari id)."""
    from behavior_models.data import describe, load_transitions

    ensure_dataset(dataset)
    summary = describe(load_transitions(dataset))
    if as_json:
        echo_json(summary)
        return
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        click.echo(f"{key:{width}s}  {value}")


from cli.sample_cache import sample_cache  # noqa: E402

main.add_command(sample_cache)


from cli.datasets_make import datasets_make  # noqa: E402

datasets.add_command(datasets_make)


from cli.bm_models import eval_command, fit_command, plot_command  # noqa: E402

main.add_command(fit_command)
main.add_command(eval_command)
main.add_command(plot_command)


if __name__ == "__main__":
    main()
