"""`lsd fetch` (being built)."""

import click


@click.command()
def fetch() -> None:
    """Not built yet."""
    raise click.ClickException("lsd fetch is not built yet")
