"""The keys file: API key names, the SHA-256 of each key, quotas; read, validated, and rewritten atomically.

Format (JSON, one object; TOXIC_API_KEYS_FILE names it):

    {"format": "toxic-service api keys", "version": 1,
     "keys": {"NAME": {"sha256": "<64 hex>", "qps": 1, "created": "2026-12-01T20:00:00Z"}}}

Only a hash of each key is stored. A plain SHA-256 is enough: a key is 256
random bits (secrets.token_urlsafe(32)), so there is nothing to guess that a
slow KDF (bcrypt, scrypt) would slow down; those exist for passwords of low
entropy. A fast hash also keeps the per-request check to microseconds.

The file is written by `toxic-service keys` (or by the Ansible role from
vault-held hashes): a temporary file in the same directory, mode 0600, fsync,
then one rename, so a worker never reads a half-written file. Standard
library only: the CLI must not load Flask or Prometheus.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxic_service.errors import BadRequest, ConfigurationError

FORMAT = "toxic-service api keys"
VERSION = 1
# A recognisable prefix lets secret scanners (and people) tell our keys from other tokens.
KEY_PREFIX = "tsk_"
KEY_BYTES = 32  # 256 bits of randomness
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters: letters, digits, '.', '_', '-', starting with a letter or digit"
MAX_QPS = 100_000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ENTRY_FIELDS = {"sha256", "qps", "created"}


class KeysFileError(ConfigurationError):
    """The keys file is unreadable or malformed; the message names the file and the field, never a key."""


class KeysInputError(BadRequest):
    """Bad input to `keys`: a name breaking NAME_RULE, a quota out of range, an existing (create) or absent (revoke) name."""


@dataclass(frozen=True)
class KeyEntry:
    name: str
    sha256: str
    qps: int
    created: str


def new_key() -> str:
    """A fresh API key: the prefix and 256 random bits, URL-safe (it may travel as `?key=`)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """The hex SHA-256 the keys file stores for `key`."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise KeysInputError(f"key name {name!r} is not valid: {NAME_RULE}")
    return name


def check_qps(qps: Any, where: str = "--qps") -> int:
    if isinstance(qps, bool) or not isinstance(qps, int) or not 1 <= qps <= MAX_QPS:
        raise KeysInputError(f"{where}: the quota must be a whole number of requests per second, 1 to {MAX_QPS} (got {qps!r})")
    return qps


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the name {key!r} appears twice")
        seen[key] = value
    return seen


def parse(text: str, path: Path) -> dict[str, KeyEntry]:
    """The entries of a keys file's text, by name; KeysFileError naming the file and the field otherwise."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as exc:  # JSONDecodeError is a ValueError, and so is a duplicate name
        raise KeysFileError(f"keys file {path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise KeysFileError(f"keys file {path}: expected an object with format {FORMAT!r} and version {VERSION}")
    keys = doc.get("keys")
    if not isinstance(keys, dict):
        raise KeysFileError(f"keys file {path}: 'keys' must be an object of name: entry")
    entries: dict[str, KeyEntry] = {}
    for name, entry in keys.items():
        where = f"keys file {path}: keys.{name}"
        if not NAME_PATTERN.fullmatch(name):
            raise KeysFileError(f"keys file {path}: key name {name!r} is not valid: {NAME_RULE}")
        if not isinstance(entry, dict) or set(entry) != _ENTRY_FIELDS:
            raise KeysFileError(f"{where}: must be an object with exactly {sorted(_ENTRY_FIELDS)}")
        if not isinstance(entry["sha256"], str) or not _HEX64.fullmatch(entry["sha256"]):
            raise KeysFileError(f"{where}.sha256: must be 64 lowercase hex digits (the SHA-256 of the key)")
        try:
            qps = check_qps(entry["qps"], f"{where}.qps")
        except KeysInputError as exc:
            raise KeysFileError(str(exc)) from None
        if not isinstance(entry["created"], str):
            raise KeysFileError(f"{where}.created: must be a UTC timestamp as text")
        entries[name] = KeyEntry(name, entry["sha256"], qps, entry["created"])
    hashes = [e.sha256 for e in entries.values()]
    if len(set(hashes)) != len(hashes):
        raise KeysFileError(f"keys file {path}: two names share one key hash")
    return entries


def load(path: Path) -> dict[str, KeyEntry]:
    """The entries of the keys file at `path`; an absent file holds no keys."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"keys file {path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    return parse(text, Path(path))


def render(entries: Mapping[str, KeyEntry]) -> str:
    keys = {
        e.name: {"sha256": e.sha256, "qps": e.qps, "created": e.created}
        for e in sorted(entries.values(), key=lambda e: e.name)
    }
    return json.dumps({"format": FORMAT, "version": VERSION, "keys": keys}, indent=2) + "\n"


def _owner_ids(path: Path, owner: str | None) -> tuple[int, int] | None:
    """The uid/gid to give the new file: --owner's, else the old file's (a root edit keeps the service's file)."""
    import grp
    import pwd

    if owner is not None:
        user, _, group = owner.partition(":")
        try:
            record = pwd.getpwnam(user)
            gid = grp.getgrnam(group).gr_gid if group else record.pw_gid
        except KeyError:
            raise KeysInputError(f"--owner {owner!r}: no such user or group on this host") from None
        if os.geteuid() != 0 and record.pw_uid != os.geteuid():
            raise KeysInputError(f"--owner {owner!r}: only root can give the keys file to another user")
        return record.pw_uid, gid
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if os.geteuid() == 0:
        return st.st_uid, st.st_gid
    return None


def write(path: Path, entries: Mapping[str, KeyEntry], owner: str | None = None) -> None:
    """Replace the keys file atomically: mode 0600, owned as _owner_ids says, fsynced before and after the rename."""
    path = Path(path)
    if not path.parent.is_dir():
        raise KeysFileError(f"keys file {path}: its directory {path.parent} does not exist")
    ids = _owner_ids(path, owner)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            if ids is not None:
                os.fchown(handle.fileno(), *ids)
            handle.write(render(entries))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock for a read-change-write of the keys file (two `keys create` at once must not lose one).

    The lock is a sibling file: the keys file itself is replaced by rename, so a lock on it would not hold.
    """
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    try:
        try:
            # Empty, so readable by all: whoever edits next (root, the service user) can open it to lock.
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:  # made by another user: flock needs no write access
            fd = os.open(lock_path, os.O_RDONLY)
    except OSError as exc:
        raise KeysFileError(f"keys file {path}: cannot create its lock file {lock_path} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def create(path: Path, name: str, qps: int, owner: str | None = None) -> str:
    """Add a key named `name` with quota `qps` to the file; returns the key (shown once, never stored)."""
    check_name(name)
    check_qps(qps)
    with locked(path):
        entries = load(path)
        if name in entries:
            raise KeysInputError(f"a key named {name!r} exists already in {path}; revoke it first to replace it")
        key = new_key()
        entries[name] = KeyEntry(name, key_hash(key), qps, utc_now())
        write(path, entries, owner)
    return key


def revoke(path: Path, name: str, owner: str | None = None) -> None:
    """Remove the key named `name`: from the next request on, it is an unknown key."""
    check_name(name)
    with locked(path):
        entries = load(path)
        if name not in entries:
            raise KeysInputError(f"no key named {name!r} in {path}")
        del entries[name]
        write(path, entries, owner)
