"""`toxic-service` command line: one group, each subcommand in its own module.

Subcommand modules import heavy libraries (TensorFlow, pyarrow) inside their
functions, so `toxic-service --help` and `serve` stay fast and small.
"""

from __future__ import annotations

import sys

import click

from toxic_service import __version__
from toxic_service.errors import ToxicServiceError


class _Group(click.Group):
    """Turns our own errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ToxicServiceError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="toxic-service")
def main() -> None:
    """Score comments for toxicity (one score per label of the model), and manage its models and vocabularies."""


def _register() -> None:
    from toxic_service.commands import check, config, evaluate, model, serve, train, train_stack, vocab

    for module in (serve, check, vocab, model, train, train_stack, evaluate, config):
        main.add_command(module.command)

    from toxic_service.commands import keys

    main.add_command(keys.command)
    from toxic_service.commands import feedback

    main.add_command(feedback.command)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
