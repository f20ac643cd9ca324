"""`toxic-service train` (placeholder until implemented)."""

import click


@click.command("train")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
