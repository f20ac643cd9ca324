"""`toxic-service config`: every setting, its environment variable, default and meaning."""

from __future__ import annotations

import click

from toxic_service.settings import Settings


@click.command("config")
@click.option("--effective", is_flag=True, help="Show the values in force here (secrets hidden).")
def command(effective: bool) -> None:
    """List the settings (TOXIC_* variables or the TOML file in TOXIC_CONFIG_FILE)."""
    current = Settings() if effective else None
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        line = f"TOXIC_{name.upper()}  (default: {default!s})\n    {info.description}"
        if current is not None:
            line += f"\n    now: {getattr(current, name)!s}"
        click.echo(line)
