"""The per-request key check: find the key, look it up by hash, spend a token of its quota, or refuse.

A key arrives as `?key=` or `X-Goog-Api-Key` (Google's clients), or as
`Authorization: Bearer` or `X-Api-Key` (anything else); the first present, in
that order, is the one checked. Refusals have the shape of the API asked:

    Perspective (what Google's APIs answer)     native /detect-toxic
    missing  403 PERMISSION_DENIED              401 unauthorized
    unknown  400 INVALID_ARGUMENT, reason       403 forbidden
             API_KEY_INVALID
    quota    429 RESOURCE_EXHAUSTED, reason     429 quota_exceeded
             RATE_LIMIT_EXCEEDED, Retry-After   Retry-After

A revoked key is an unknown key. With TOXIC_API_KEYS_REQUIRED off the
Perspective routes accept any key, as Perspective clients always send one: a
known key is still held to its quota, anything else passes unnamed.

The keys file is stat()ed on every request and re-read when its inode, size
or mtime changes, so `keys create`/`revoke` act without a restart. A keys
file that cannot be read or parsed fails closed (every checked request is a
500 until it is fixed), so a broken edit never revives a revoked key.

The key itself never leaves this module: logs, metric labels and messages
carry the key's NAME, or '_unknown' / '_none'.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NewType

from flask import Request, current_app, request

from toxic_service.apikeys import keyfile
from toxic_service.apikeys.quota import QuotaStore, state_path
from toxic_service.errors import Forbidden, QuotaExceeded, ToxicServiceError, Unauthorized
from toxic_service.settings import Settings

log = logging.getLogger("toxic_service.api")

KeyName = NewType("KeyName", str)

NO_KEY_LABEL, UNKNOWN_KEY_LABEL = "_none", "_unknown"  # key names start with a letter or digit: no clash
ACCEPTED, MISSING, UNKNOWN, OVER_QUOTA = "accepted", "missing", "unknown", "over_quota"
# Perspective's two keyed methods (the blueprint's endpoints); the discovery document needs no key, as Google's.
KEYED_PERSPECTIVE_ENDPOINTS = frozenset({"perspective.perspective_analyze", "perspective.perspective_suggestscore"})
# Google's messages, word for word: clients and their tests match on them.
MISSING_MESSAGE = "The request is missing a valid API key."
INVALID_MESSAGE = "API key not valid. Please pass a valid API key."
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
_EXTENSION = "toxic_service.apikeys"


class KeyRing:
    """The keys file's entries by hash, re-read when the file changes (one stat per lookup)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, ...] | None = None
        self._loaded = path is None
        self._by_hash: dict[str, keyfile.KeyEntry] = {}
        self._lock = threading.Lock()

    def _current_stamp(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self) -> None:
        if self.path is None:
            return
        stamp = self._current_stamp()
        if self._loaded and stamp == self._stamp:
            return
        with self._lock:
            try:
                entries = keyfile.load(self.path)
            except keyfile.KeysFileError as exc:
                self._loaded = False  # fail closed, and try again on the next request
                if stamp != self._stamp:  # one log line per broken version of the file, not one per request
                    log.error("API keys file unusable; refusing keyed requests until it is fixed",
                              extra={"event": "api_keys", "detail": str(exc)})
                self._stamp = stamp
                raise
            self._by_hash = {entry.sha256: entry for entry in entries.values()}
            if self._stamp is not None or stamp is not None:
                log.info("API keys loaded", extra={"event": "api_keys", "keys": len(entries), "file": str(self.path)})
            self._stamp, self._loaded = stamp, True

    def lookup(self, key: str) -> keyfile.KeyEntry | None:
        self.refresh()
        digest = keyfile.key_hash(key)
        entry = self._by_hash.get(digest)
        # The dict finds the candidate by hash; the digest comparison itself is constant-time.
        if entry is not None and hmac.compare_digest(entry.sha256, digest):
            return entry
        return None


@dataclass(frozen=True)
class Verdict:
    outcome: str  # ACCEPTED, MISSING, UNKNOWN, OVER_QUOTA
    label: str  # the metric label: the key's name, or NO_KEY_LABEL / UNKNOWN_KEY_LABEL
    name: KeyName | None = None
    qps: int = 0
    retry_after: int = 0


class Gate:
    """One worker's key check: the key ring and the host-wide quota buckets."""

    def __init__(self, settings: Settings) -> None:
        keys_file = settings.api_keys_file
        self.ring = KeyRing(keys_file)
        self.quota = QuotaStore(state_path(keys_file)) if keys_file is not None else None
        if keys_file is None and (settings.api_keys_required or settings.api_keys_native):
            log.warning("API keys are required but TOXIC_API_KEYS_FILE is not set: every key is refused",
                        extra={"event": "api_keys"})

    def check(self, key: str | None, required: bool) -> Verdict:
        if not key:
            return Verdict(MISSING if required else ACCEPTED, NO_KEY_LABEL)
        entry = self.ring.lookup(key)
        if entry is None:
            return Verdict(UNKNOWN if required else ACCEPTED, UNKNOWN_KEY_LABEL)
        name = KeyName(entry.name)
        decision = self.quota.take(entry.name, entry.qps)
        if not decision.allowed:
            return Verdict(OVER_QUOTA, entry.name, name, entry.qps, decision.retry_after)
        return Verdict(ACCEPTED, entry.name, name, entry.qps)


def presented_key(req: Request) -> str | None:
    """The key the request carries: `?key=`, X-Goog-Api-Key, Authorization: Bearer, X-Api-Key (first present)."""
    key = req.args.get("key") or req.headers.get("X-Goog-Api-Key")
    if not key:
        scheme, _, credentials = req.headers.get("Authorization", "").strip().partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else None
    key = (key or req.headers.get("X-Api-Key") or "").strip()
    return key or None


def gate(settings: Settings) -> Gate:
    """The app's Gate, made at its first keyed request (after gunicorn's fork, like every worker resource)."""
    extensions = current_app.extensions
    found = extensions.get(_EXTENSION)
    if found is None:
        found = extensions.setdefault(_EXTENSION, Gate(settings))
    return found


@functools.cache
def _key_refusal_class() -> type:
    """PerspectiveError with the google.rpc.ErrorInfo Google's APIs add to key errors (API_KEY_INVALID, ...).

    Imported here, not at the top: the Perspective package imports this module for its before_request.
    """
    from toxic_service.perspective.errors import PerspectiveError

    class KeyRefusal(PerspectiveError):
        def __init__(self, status: str, message: str, reason: str | None, **kwargs: Any) -> None:
            super().__init__(status, message, **kwargs)
            self.reason = reason

        def details(self) -> list[dict[str, Any]]:
            info = []
            if self.reason:
                info.append({"@type": ERROR_INFO_TYPE, "reason": self.reason, "domain": "googleapis.com",
                             "metadata": {"service": "commentanalyzer.googleapis.com"}})
            return info + super().details()

    return KeyRefusal


def _perspective_refusal(verdict: Verdict) -> Exception:
    refusal = _key_refusal_class()
    if verdict.outcome == MISSING:
        return refusal("PERMISSION_DENIED", MISSING_MESSAGE, None)
    if verdict.outcome == UNKNOWN:
        return refusal("INVALID_ARGUMENT", INVALID_MESSAGE, "API_KEY_INVALID")
    return refusal(
        "RESOURCE_EXHAUSTED",
        f"Quota exceeded for API key '{verdict.name}': {verdict.qps} requests per second.",
        "RATE_LIMIT_EXCEEDED",
        retry_after=verdict.retry_after,
    )


def _native_refusal(verdict: Verdict) -> ToxicServiceError:
    if verdict.outcome == MISSING:
        return Unauthorized("an API key is required: send 'Authorization: Bearer KEY' or 'X-Api-Key: KEY'")
    if verdict.outcome == UNKNOWN:
        return Forbidden("the API key is not valid (unknown or revoked)")
    return QuotaExceeded(
        f"API key '{verdict.name}' is over its quota of {verdict.qps} requests per second; "
        f"retry after {verdict.retry_after} s",
        verdict.retry_after,
    )


def authorize(req: Request, settings: Settings, *, native: bool = False) -> KeyName | None:
    """The name of the request's key, None when none is needed and none known; raises the API's refusal otherwise.

    native=False: a Perspective route (keys required as TOXIC_API_KEYS_REQUIRED says, Google's error shape);
    native=True: /detect-toxic with TOXIC_API_KEYS_NATIVE on (a key always required, the native error shape).
    """
    from toxic_service.api import metrics

    verdict = gate(settings).check(presented_key(req), required=native or settings.api_keys_required)
    metrics.API_KEY_REQUESTS.labels(verdict.label, verdict.outcome).inc()
    if verdict.outcome == ACCEPTED:
        return verdict.name
    raise _native_refusal(verdict) if native else _perspective_refusal(verdict)


def perspective_check() -> None:
    """The Perspective blueprint's before_request: the key of analyze and suggestscore calls.

    Sets `request.perspective_key_name` (the key's name or None), which suggestscore records.
    Other methods and paths are not checked here: the discovery document is public, as Google's.
    """
    if request.method != "POST" or request.endpoint not in KEYED_PERSPECTIVE_ENDPOINTS:
        return
    request.perspective_key_name = authorize(request, current_app.extensions["toxic_service.settings"])
