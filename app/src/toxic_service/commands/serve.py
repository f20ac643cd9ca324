"""`toxic-service serve` (placeholder until implemented)."""

import click


@click.command("serve")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
