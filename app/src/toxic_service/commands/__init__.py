"""One module per `toxic-service` subcommand; each exposes `command`."""
