"""`toxic-service vocab` (placeholder until implemented)."""

import click


@click.command("vocab")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
