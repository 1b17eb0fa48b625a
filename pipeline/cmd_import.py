"""`lsd import` (being built)."""

import click


@click.group("import")
def import_group() -> None:
    """Not built yet."""
