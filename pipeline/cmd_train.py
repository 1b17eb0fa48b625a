"""`lsd train` (being built)."""

import click


@click.command()
def train() -> None:
    """Not built yet."""
    raise click.ClickException("lsd train is not built yet")
