"""`toxic-service keys create|list|revoke`: the API keys of the Perspective routes (and the native API).

The keys file (TOXIC_API_KEYS_FILE, or --file) holds names, quotas and the
SHA-256 of each key, never a key: `create` prints the new key once, and it
cannot be shown again. Every change rewrites the file atomically (mode 0600);
run as root, the file keeps its owner, or takes --owner's, so the service user
can read it. Workers pick changes up at their next request.

Bad input (a name outside the allowed characters, an existing name for
`create`, an unknown one for `revoke`, a malformed file) is one line naming
what is wrong, exit 1, and the file is left as it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from toxic_service.apikeys import keyfile
from toxic_service.apikeys.quota import QuotaStore, state_path


def _keys_file(path: Path | None) -> Path:
    if path is not None:
        return path
    from toxic_service.commands.serve import load_settings

    configured = load_settings().api_keys_file
    if configured is None:
        raise click.UsageError("no keys file: set TOXIC_API_KEYS_FILE or pass --file")
    return configured


def _default_qps() -> int:
    from toxic_service.commands.serve import load_settings

    return load_settings().api_keys_default_qps


file_option = click.option(
    "--file", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Keys file (default: TOXIC_API_KEYS_FILE).",
)  # fmt: skip
owner_option = click.option(
    "--owner", default=None, metavar="USER[:GROUP]",
    help="Owner to give the rewritten file (root only; default: keep the current owner).",
)  # fmt: skip


@click.group("keys")
def command() -> None:
    """Create, list and revoke API keys (only a hash of each key is stored)."""


@command.command("create")
@click.argument("name")
@click.option("--qps", type=int, default=None, help="Quota in requests per second (default: TOXIC_API_KEYS_DEFAULT_QPS).")
@file_option
@owner_option
def create(name: str, qps: int | None, path: Path | None, owner: str | None) -> None:
    """Make a key NAME and print it once (store it now: only its hash is kept)."""
    keyfile.check_name(name)
    target = _keys_file(path)
    key = keyfile.create(target, name, qps if qps is not None else _default_qps(), owner)
    click.echo(key)
    click.echo(f"created key {name!r} in {target}; it is shown only this once", err=True)


@command.command("list")
@file_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
def list_keys(path: Path | None, as_json: bool) -> None:
    """Names, quotas, creation and last use (never a key or its hash)."""
    target = _keys_file(path)
    entries = keyfile.load(target)
    used = QuotaStore(state_path(target)).last_used()
    rows = []
    for entry in sorted(entries.values(), key=lambda e: e.name):
        last = used.get(entry.name)
        last_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last is not None else None
        rows.append({"name": entry.name, "qps": entry.qps, "created": entry.created, "last_used": last_text})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no keys in {target}", err=True)
        return
    width = max(4, *(len(row["name"]) for row in rows))
    click.echo(f"{'NAME':<{width}}  {'QPS':>6}  {'CREATED':<20}  LAST USED")
    for row in rows:
        click.echo(f"{row['name']:<{width}}  {row['qps']:>6}  {row['created']:<20}  {row['last_used'] or 'never'}")


@command.command("revoke")
@click.argument("name")
@file_option
@owner_option
def revoke(name: str, path: Path | None, owner: str | None) -> None:
    """Remove key NAME: from the workers' next request on, it is refused as unknown."""
    target = _keys_file(path)
    keyfile.revoke(target, name, owner)
    click.echo(f"revoked key {name!r} in {target}", err=True)
