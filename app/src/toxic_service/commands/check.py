"""`toxic-service check` (placeholder until implemented)."""

import click


@click.command("check")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
