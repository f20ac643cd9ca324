"""One typed settings object, read from TOXIC_* variables and an optional file.

Precedence (highest first): keyword arguments, TOXIC_* environment variables,
the TOML file named by TOXIC_CONFIG_FILE, the defaults below. Every setting's
description is its documentation: `toxic-service config` prints them all.

Standard library only, on purpose: every gunicorn worker builds a Settings,
and pydantic-settings cost each worker 12 MB of RSS (measured) on a host with
1 GB for everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxic_service.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (EL targets)
    import tomli as tomllib

ENV_PREFIX = "TOXIC_"
CONFIG_FILE_VARIABLE = "TOXIC_CONFIG_FILE"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class InvalidSettings(ConfigurationError):
    """One or more settings are wrong; the message names each by its TOXIC_* variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings: " + "; ".join(problems))


class Secret:
    """A value that never shows in repr(), str() or logs; get_secret_value() reads it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def default_data_dir() -> Path:
    """Where `make assets` puts the default bundle and vocabulary."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "toxic-service" / "default"


@dataclass(frozen=True)
class Setting:
    """One setting: its type, default, limits and documentation."""

    name: str
    kind: type  # Path, int, bool, str or Secret
    description: str
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    optional: bool = False  # None is a valid value (the default derives it)
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    nonblank: bool = False

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory else self.default

    def convert(self, raw: Any, *, from_text: bool) -> Any:
        """The typed value of `raw` (text from the environment, or a TOML/Python value); ValueError says why not."""
        if raw is None or (from_text and raw == "" and self.optional):
            if self.optional:
                return None
            raise ValueError("must be set")
        if self.kind is bool:
            return self._to_bool(raw, from_text)
        if self.kind is int:
            return self._checked_int(raw, from_text)
        if self.kind is Path:
            if isinstance(raw, Path) or (isinstance(raw, str) and raw):
                return Path(raw)
            raise ValueError("must be a non-empty path")
        if self.kind is Secret:
            if isinstance(raw, Secret):
                return raw
            if isinstance(raw, str):
                return Secret(raw)
            raise ValueError("must be text")
        if not isinstance(raw, str):
            raise ValueError(f"must be text, not {type(raw).__name__}")
        if self.choices and raw not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)} (got {raw!r})")
        if self.nonblank and not raw.strip():
            raise ValueError("must not be empty")
        return raw

    @staticmethod
    def _to_bool(raw: Any, from_text: bool) -> bool:
        if isinstance(raw, bool):
            return raw
        if from_text and isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"must be true or false (got {raw!r})")

    def _checked_int(self, raw: Any, from_text: bool) -> int:
        if from_text and isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise ValueError(f"must be a whole number (got {raw!r})") from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise ValueError(f"must be a whole number (got {raw!r})")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be >= {self.minimum} (got {value})")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be <= {self.maximum} (got {value})")
        return value


FIELDS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting("data_dir", Path, "Directory holding `model/` and `vocab.sqlite` when those are not set.",
                default_factory=default_data_dir),
        Setting("bundle", Path, "Model bundle directory (model.tflite and/or model.keras + metadata.json). "
                "Default: <data_dir>/model.", optional=True),
        Setting("runtime", str, "Inference runtime: litert (small, the default) or keras (needs TensorFlow, "
                "~950 MB per worker).", default="litert", choices=("litert", "keras")),
        Setting("inference_threads", int, "Threads per interpreter (per worker).", default=1, minimum=1, maximum=64),
        Setting("vocab_backend", str, "Vocabulary store.", default="sqlite", choices=("sqlite", "mongodb")),
        Setting("sqlite_path", Path, "SQLite vocabulary file. Default: <data_dir>/vocab.sqlite.", optional=True),
        Setting("mongodb_uri", Secret, "MongoDB URI; use a user that only reads, but for inserting feedback (roles/mongodb).",
                default=Secret("mongodb://127.0.0.1:27017/")),
        Setting("mongodb_database", str, "MongoDB database (the seed's name).", default="word_embeddings",
                nonblank=True),
        Setting("mongodb_collection", str, "Collection of {word, index} documents; a seed dump uses "
                "'glove-wiki-gigaword-50.posts'.", default="vocab", nonblank=True),
        Setting("mongodb_timeout_ms", int, "Server selection/socket timeout: a down store gives a fast 503.",
                default=500, minimum=50, maximum=30_000),
        Setting("cache_entries", int, "LRU entries in front of the store (0 disables).", default=50_000, minimum=0),
        Setting("max_batch", int, "Most comments in one `sequences` request.", default=64, minimum=1, maximum=4096),
        Setting("max_text_chars", int, "Longest accepted comment, in characters (413 beyond).", default=20_000,
                minimum=1),
        Setting("max_body_bytes", int, "Largest accepted request body (413 beyond).", default=1_048_576, minimum=1024),
        Setting("log_text", bool, "Log comment text (off: comments can hold personal data).", default=False),
        Setting("feedback_db", Path, "SQLite file of comments:suggestscore feedback (WAL mode). Default: "
                "<data_dir>/feedback.sqlite; the role puts it in shared/ so it outlives releases. With the mongodb "
                "vocabulary backend and this unset, feedback goes to the 'feedback' collection of "
                "TOXIC_MONGODB_DATABASE instead; set it to keep feedback in SQLite there too.", optional=True),
        Setting("feedback_max_bytes", int, "Size cap of the feedback database; a suggestion beyond it is refused "
                "(429 RESOURCE_EXHAUSTED), nothing half-written.", default=268_435_456, minimum=65_536),
        Setting("api_keys_file", Path, "JSON file of API key names, SHA-256 hashes and quotas (`toxic-service keys`; "
                "mode 0600, the service user's). Re-read when it changes: no restart. Quota state and last-used "
                "times go beside it in <stem>.quota.sqlite, so its directory must be writable by the service. "
                "Unset: no key is known.", optional=True),
        Setting("api_keys_required", bool, "Perspective routes refuse a missing key (403 PERMISSION_DENIED) or an "
                "unknown or revoked one (400 API_KEY_INVALID). Off: any key is accepted, as Perspective clients "
                "always send one; a known key still has its quota; requests without a known key have no quota here "
                "(nginx's per-client rate limit bounds them).", default=False),
        Setting("api_keys_native", bool, "Also require a known key on the native API (/detect-toxic), sent as "
                "`Authorization: Bearer KEY` or `X-Api-Key: KEY` (401 missing, 403 unknown, 429 over quota).",
                default=False),
        Setting("api_keys_default_qps", int, "Quota of a key created without --qps, in requests per second "
                "(Perspective's default was 1). The quota holds across all workers of a host.", default=1,
                minimum=1, maximum=100_000),
    )
}


# Per-label thresholds: one setting per label of the served bundle, so their names cannot be listed here.
# A label's setting is named threshold_<label> (lower case), its variable TOXIC_THRESHOLD_<LABEL>, like
# every other setting; which labels exist is only known once the bundle is read (thresholds_for).
THRESHOLD_NAME_PREFIX = "threshold_"
THRESHOLD_PREFIX = ENV_PREFIX + THRESHOLD_NAME_PREFIX.upper()
DEFAULT_THRESHOLD = 0.5
# The documentation row of the family (`toxic-service config`, docs/configuration.md); never converted.
THRESHOLD_SETTING = Setting(
    "threshold_<label>", float,
    "Score at or over which a label is flagged (`flagged`/`flags` in /detect-toxic answers), one variable per label "
    "of the served bundle, e.g. TOXIC_THRESHOLD_INSULT. Default: the bundle's recommended threshold "
    "(metadata.json `thresholds`), else 0.5. A number in [0, 1]; a variable naming a label the bundle does not "
    "have stops the service at start.", default=DEFAULT_THRESHOLD,
)
DOCUMENTED = (*FIELDS.values(), THRESHOLD_SETTING)


def threshold_variable(label: str) -> str:
    """The variable that sets `label`'s threshold: TOXIC_THRESHOLD_ and the label in upper case."""
    return THRESHOLD_PREFIX + label.upper()


def _threshold_value(raw: Any, from_text: bool) -> float:
    """A threshold: a number in [0, 1] (NaN and infinities are outside it); ValueError says why not."""
    if from_text and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number between 0 and 1 (got {raw!r})") from None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise ValueError(f"must be a number between 0 and 1 (got {raw!r})")
    if not 0.0 <= value <= 1.0:  # False for NaN too
        raise ValueError(f"must be between 0 and 1 (got {raw!r})")
    return value


def _thresholds_from(
    file_or_keywords: Mapping[str, Any], environ: Mapping[str, str], keywords: Mapping[str, Any]
) -> tuple[dict[str, float], list[str]]:
    """{label key (lower case): threshold} set in the file, the environment or by keyword (that precedence,
    lowest first); and the problems, each naming its variable."""
    found: dict[str, float] = {}
    problems: list[str] = []
    given = [(k, v, False) for k, v in file_or_keywords.items() if k.startswith(THRESHOLD_NAME_PREFIX)]
    given += [(k[len(ENV_PREFIX):].lower(), v, True) for k, v in environ.items() if k.startswith(THRESHOLD_PREFIX)]
    given += [(k, v, False) for k, v in keywords.items() if k.startswith(THRESHOLD_NAME_PREFIX)]
    for name, raw, from_text in given:  # a later source replaces an earlier one
        key = name[len(THRESHOLD_NAME_PREFIX):].lower()
        variable = threshold_variable(key)
        if not key:
            problems.append(f"{variable}: names no label (use {THRESHOLD_PREFIX}<LABEL>, e.g. {THRESHOLD_PREFIX}INSULT)")
            continue
        try:
            found[key] = _threshold_value(raw, from_text)
        except ValueError as exc:
            problems.append(f"{variable}: {exc}")
    return found, problems


def _is_setting(name: str) -> bool:
    return name in FIELDS or name.startswith(THRESHOLD_NAME_PREFIX)


def _config_file_values() -> dict[str, Any]:
    path = os.environ.get(CONFIG_FILE_VARIABLE)
    if not path:
        return {}
    if not Path(path).is_file():
        raise FileNotFoundError(f"{CONFIG_FILE_VARIABLE}={path}: no such file")
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettings([f"{CONFIG_FILE_VARIABLE}={path}: not valid TOML ({exc})"]) from None
    unknown = sorted(key for key in values if not _is_setting(key))
    if unknown:
        raise InvalidSettings([f"{CONFIG_FILE_VARIABLE}={path}: unknown setting {key!r}" for key in unknown])
    return values


class Settings:
    """The settings in force: attributes named as in FIELDS, immutable once built."""

    fields = FIELDS

    def __init__(self, **overrides: Any) -> None:
        unknown = sorted(key for key in overrides if not _is_setting(key))
        if unknown:
            raise InvalidSettings([f"unknown setting {key!r}" for key in unknown])
        from_file = _config_file_values()
        thresholds, problems = _thresholds_from(from_file, os.environ, overrides)
        object.__setattr__(self, "thresholds", thresholds)
        for name, setting in FIELDS.items():
            try:
                if name in overrides:
                    value = setting.convert(overrides[name], from_text=False)
                elif setting.variable in os.environ:
                    value = setting.convert(os.environ[setting.variable], from_text=True)
                elif name in from_file:
                    value = setting.convert(from_file[name], from_text=False)
                else:
                    value = setting.get_default()
            except ValueError as exc:
                problems.append(f"{setting.variable}: {exc}")
                continue
            object.__setattr__(self, name, value)
        if problems:
            raise InvalidSettings(problems)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed (validated like any other)."""
        current = {name: getattr(self, name) for name in FIELDS}
        copy = object.__new__(Settings)
        # self's thresholds (the environment was read when self was built), then the changes.
        kept = {THRESHOLD_NAME_PREFIX + key: value for key, value in self.thresholds.items()}
        thresholds, problems = _thresholds_from(kept, {}, changes)
        object.__setattr__(copy, "thresholds", thresholds)
        for name, value in {**current, **changes}.items():
            if name.startswith(THRESHOLD_NAME_PREFIX):
                continue
            if name not in FIELDS:
                problems.append(f"unknown setting {name!r}")
                continue
            try:
                object.__setattr__(copy, name, FIELDS[name].convert(value, from_text=False))
            except ValueError as exc:
                problems.append(f"{FIELDS[name].variable}: {exc}")
        if problems:
            raise InvalidSettings(problems)
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are immutable; use .replace(...)")

    def __repr__(self) -> str:
        shown = [f"{name}={getattr(self, name)!r}" for name in FIELDS]
        shown += [f"{THRESHOLD_NAME_PREFIX}{key}={value!r}" for key, value in sorted(self.thresholds.items())]
        return "Settings(" + ", ".join(shown) + ")"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Settings)
            and all(getattr(self, n) == getattr(other, n) for n in FIELDS)
            and self.thresholds == other.thresholds
        )

    def thresholds_for(self, labels: Sequence[str], recommended: Mapping[str, float] | None = None) -> dict[str, float]:
        """The threshold in force per label of the served bundle, in label order.

        A label's TOXIC_THRESHOLD_<LABEL> setting, else the bundle's recommended threshold
        (`recommended`, metadata.json `thresholds`), else DEFAULT_THRESHOLD. A threshold set for a label
        the bundle does not have is refused (InvalidSettings naming the variable): it would silently do
        nothing, most likely a typo or a setting left from another bundle.
        """
        keys = {label.lower() for label in labels}
        unknown = sorted(set(self.thresholds) - keys)
        if unknown:
            raise InvalidSettings([
                f"{threshold_variable(key)}: the bundle has no label {key!r} (its labels: {', '.join(labels)})"
                for key in unknown
            ])
        recommended = recommended or {}
        return {
            label: self.thresholds.get(label.lower(), recommended.get(label, DEFAULT_THRESHOLD)) for label in labels
        }

    __hash__ = None  # type: ignore[assignment]

    @property
    def bundle_dir(self) -> Path:
        return self.bundle or self.data_dir / "model"

    @property
    def sqlite_file(self) -> Path:
        return self.sqlite_path or self.data_dir / "vocab.sqlite"

    @property
    def feedback_file(self) -> Path:
        return self.feedback_db or self.data_dir / "feedback.sqlite"

    # Typed attributes, for readers and type checkers (set in __init__).
    thresholds: dict[str, float]  # {label (lower case): threshold} as set; thresholds_for() gives those in force
    data_dir: Path
    bundle: Path | None
    runtime: str
    inference_threads: int
    vocab_backend: str
    sqlite_path: Path | None
    mongodb_uri: Secret
    mongodb_database: str
    mongodb_collection: str
    mongodb_timeout_ms: int
    cache_entries: int
    max_batch: int
    max_text_chars: int
    max_body_bytes: int
    log_text: bool
    feedback_db: Path | None
    feedback_max_bytes: int
    api_keys_file: Path | None
    api_keys_required: bool
    api_keys_native: bool
    api_keys_default_qps: int
