"""Every failure a user can cause has one type here, and one HTTP status.

The API maps these to JSON errors in one place (api/errors.py); the CLI turns
them into a message and a non-zero exit. Nothing else decides a status code.
"""

from __future__ import annotations


class ToxicServiceError(Exception):
    """Base class: `code` is the stable machine-readable error code."""

    code = "internal_error"
    status = 500


class BadRequest(ToxicServiceError):
    code = "bad_request"
    status = 400


class PayloadTooLarge(ToxicServiceError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(ToxicServiceError):
    code = "unsupported_media_type"
    status = 415


class StoreUnavailable(ToxicServiceError):
    """The vocabulary store did not answer in time (MongoDB down, file gone)."""

    code = "store_unavailable"
    status = 503


class VocabularyError(StoreUnavailable):
    """A vocabulary file that cannot serve: missing, not SQLite, or without its `meta` table.

    A StoreUnavailable, so a worker keeps answering 503 and picks up a file
    fixed in place, as it does when the store is down.
    """


class NotReady(ToxicServiceError):
    code = "not_ready"
    status = 503


class BundleError(ToxicServiceError):
    """A model bundle is missing, malformed, or does not match the vocabulary."""

    code = "bundle_error"
    status = 500


class VocabularyMismatch(BundleError):
    code = "vocabulary_mismatch"


class ConfigurationError(ToxicServiceError):
    code = "configuration_error"
    status = 500
