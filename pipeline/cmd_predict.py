"""`lsd ensemble`, `lsd evaluate`, `lsd predict` (being built)."""

import click


@click.command()
def ensemble() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")


@click.command()
def evaluate() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")


@click.command()
def predict() -> None:
    """Not built yet."""
    raise click.ClickException("not built yet")
