"""`toxic-service model` (placeholder until implemented)."""

import click


@click.command("model")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
