"""Errors the engine raises. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: an error a user or operator can act on. `str(e)` is the message to show."""


class DataError(EngineError):
    """Market data could not be produced."""


class UnknownTicker(DataError):
    """The source knows nothing about this symbol."""


class NoPriceData(DataError):
    """Prices are missing for a symbol or a window (unknown ticker, delisted, not yet traded)."""


class BadDate(DataError):
    """A date that cannot be used (malformed, in the future, before the data starts)."""


class MissingApiKey(DataError):
    """A source that needs a key was asked for data without one."""


class SourceAuthError(DataError):
    """The provider rejected our credentials or plan (HTTP 401/403). Retrying will not help."""


class SourceUnavailable(DataError):
    """The provider kept failing (rate limit, 5xx, timeouts) after the bounded retries."""


class SnapshotMissing(DataError):
    """DATA_SNAPSHOT_DIR is set but holds nothing for what was asked."""


class PromptError(EngineError):
    """A prompt could not be built, parsed or fitted."""


class PromptTooLong(PromptError):
    """Even with every droppable news item removed, the prompt does not fit the token budget."""


class ModelError(EngineError):
    """The model or adapter cannot be loaded or used as configured."""


class ModelServerError(ModelError):
    """The model server (MODEL_BACKEND=vllm) could not be reached, kept failing, or refused a request."""
