"""One typed settings object, read from TOXIC_* variables and an optional file.

Precedence (highest first): keyword arguments, TOXIC_* environment variables,
the TOML file named by TOXIC_CONFIG_FILE, the defaults below. Every field's
description is its documentation: `toxic-service config` prints them all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    """Where `make assets` puts the default bundle and vocabulary."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "toxic-service" / "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOXIC_", extra="forbid", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Directory holding `model/` and `vocab.sqlite` when those are not set.",
    )
    bundle: Path | None = Field(
        None, description="Model bundle directory (model.tflite and/or model.keras + metadata.json). Default: <data_dir>/model."
    )
    runtime: Literal["litert", "keras"] = Field(
        "litert", description="Inference runtime: litert (small, the default) or keras (needs TensorFlow, ~950 MB per worker)."
    )
    inference_threads: int = Field(1, ge=1, le=64, description="Threads per interpreter (per worker).")

    vocab_backend: Literal["sqlite", "mongodb"] = Field("sqlite", description="Vocabulary store.")
    sqlite_path: Path | None = Field(None, description="SQLite vocabulary file. Default: <data_dir>/vocab.sqlite.")
    mongodb_uri: SecretStr = Field(
        SecretStr("mongodb://127.0.0.1:27017/"), description="MongoDB URI; use a read-only user."
    )
    mongodb_database: str = Field("word_embeddings", description="MongoDB database (the seed's name).")
    mongodb_collection: str = Field(
        "vocab", description="Collection of {word, index} documents; a seed dump uses 'glove-wiki-gigaword-50.posts'."
    )
    mongodb_timeout_ms: int = Field(
        500, ge=50, le=30_000, description="Server selection/socket timeout: a down store gives a fast 503."
    )
    cache_entries: int = Field(50_000, ge=0, description="LRU entries in front of the store (0 disables).")

    max_batch: int = Field(64, ge=1, le=4096, description="Most comments in one `sequences` request.")
    max_text_chars: int = Field(20_000, ge=1, description="Longest accepted comment, in characters (413 beyond).")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body (413 beyond).")
    log_text: bool = Field(False, description="Log comment text (off: comments can hold personal data).")

    @field_validator("mongodb_collection", "mongodb_database")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @property
    def bundle_dir(self) -> Path:
        return self.bundle or self.data_dir / "model"

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "vocab.sqlite"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("TOXIC_CONFIG_FILE")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"TOXIC_CONFIG_FILE={config_file}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)
