"""`toxic-service config`: every setting, its environment variable, default and meaning."""

from __future__ import annotations

import click

from toxic_service.settings import DOCUMENTED, FIELDS, Secret, Settings


def settings_table() -> str:
    """The settings as a Markdown table: docs/configuration.md is exactly this output."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for setting in DOCUMENTED:
        # The one factory default depends on the environment: show the rule, not this machine's path.
        default = "$XDG_CACHE_HOME/toxic-service/default" if setting.default_factory else setting.get_default()
        shown = default.get_secret_value() if isinstance(default, Secret) else default
        rows.append(f"| `{setting.variable}` | `{shown}` | {setting.description} |")
    return "\n".join(rows) + "\n"


@click.command("config")
@click.option("--effective", is_flag=True, help="Show the values in force here (secrets hidden).")
@click.option("--markdown", is_flag=True, help="Print the settings as the Markdown table in docs/configuration.md.")
def command(effective: bool, markdown: bool) -> None:
    """List the settings (TOXIC_* variables or the TOML file in TOXIC_CONFIG_FILE)."""
    if markdown:
        click.echo(settings_table(), nl=False)
        return
    current = Settings() if effective else None
    for setting in DOCUMENTED:
        line = f"{setting.variable}  (default: {setting.get_default()!s})\n    {setting.description}"
        if current is not None and setting.name in FIELDS:
            line += f"\n    now: {getattr(current, setting.name)!s}"
        click.echo(line)
    if current is not None:
        click.echo(_thresholds_in_force(current))


def _thresholds_in_force(settings: Settings) -> str:
    """The thresholds the service flags at, per label of the bundle these settings serve."""
    from toxic_service.bundle import load_metadata
    from toxic_service.errors import BundleError
    from toxic_service.settings import InvalidSettings, threshold_variable

    try:
        meta = load_metadata(settings.bundle_dir)
        thresholds = settings.thresholds_for(meta.labels, meta.thresholds)
    except (BundleError, InvalidSettings) as exc:
        return f"thresholds in force: unknown ({exc})"
    return "thresholds in force:\n" + "\n".join(
        f"    {threshold_variable(label)} = {value:g}" for label, value in thresholds.items()
    )
