"""The teacher: a chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...), and its errors.

`Teacher.complete(system, user)` is the one call `engine.training.teacher.build_dataset` makes. Retries are ours,
bounded and counted; the errors say which failures are fatal (a rejected key, an unknown model or URL) and which cost
only the one example. The API key lives only inside the official client: no message, log line or repr contains it.
The `openai` package (the `model` extra) is imported when a Teacher is made, so importing this module needs none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from engine.exceptions import EngineError
from engine.retry import Backoff, RetriesExhausted, Retryable, RetryNote, RetryPolicy, call_with_retries, retry_after_s

log = logging.getLogger(__name__)


# ---- Errors and messages ---------------------------------------------------------------------------------------


class TeacherError(EngineError):
    """The teacher model could not give an answer."""


class TeacherAuthError(TeacherError):
    """The endpoint rejected the key (401/403) or its quota is gone. Fatal: every request would fail alike."""


class TeacherConfigError(TeacherError):
    """The teacher or the output folder is set up wrong (no key, unknown model or URL, mismatched folder). Fatal."""


class TeacherUnavailable(TeacherError):
    """429/5xx/timeouts/connection errors outlasted the bounded retries."""


class TeacherRequestError(TeacherError):
    """The endpoint refused this one request (another 4xx, e.g. a prompt over its context length)."""


_AUTH_MESSAGE = (
    "The teacher endpoint {url} rejected TEACHER_API_KEY (HTTP {status}). Check that the key is valid for this "
    "endpoint and for model '{model}'; retrying will not help."
)
_QUOTA_MESSAGE = (
    "The account behind TEACHER_API_KEY has no quota left at {url} (HTTP 429 insufficient_quota). Add credit or "
    "use another key; retrying will not help."
)
_NOT_FOUND_MESSAGE = (
    "The teacher endpoint {url} answered HTTP 404 for model '{model}'. Check TEACHER_BASE_URL (it should end in "
    "/v1 for most servers) and TEACHER_MODEL."
)
_NO_KEY_MESSAGE = "TEACHER_API_KEY is empty. Set it (a local server that ignores keys still needs a placeholder)."


# ---- The teacher -----------------------------------------------------------------------------------------------


class ChatTeacher(Protocol):
    """What `build_dataset` needs from a teacher. `Teacher` is the real one; tests may wrap it."""

    model: str
    base_url: str

    def complete(self, system: str, user: str) -> str: ...


class Teacher:
    """A chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...), with our own retries.

    The official client's retries are off (`max_retries=0`) so that there is one retry policy, ours
    (`engine.retry`): bounded, with capped exponential backoff (never shorter than the server's Retry-After or
    retry-after-ms, capped), a cap on all the waits of one request together, counted in `retries`, and with an
    injectable `sleep` for tests. The API key lives only inside the client: no message, log line or repr contains it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        timeout_s: float = 120.0,
        attempts: int = 5,
        base_delay_s: float = 2.0,
        max_delay_s: float = 60.0,
        max_total_wait_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`attempts` counts the first try; a retry waits min(max_delay_s, base_delay_s * 2**n) seconds, or the
        server's Retry-After when longer (still capped), and all the waits of one request stay within
        `max_total_wait_s` (a retry that would pass it is not made)."""
        if not api_key or not api_key.strip():
            raise TeacherConfigError(_NO_KEY_MESSAGE)
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        import openai  # the `model` extra; importing this module alone must not need it

        self._openai = openai
        self.base_url = base_url
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_total_wait_s = max_total_wait_s
        self.retries = 0  # transport-level retries so far, for the manifest
        self._sleep = sleep
        # max_retries=0: the client's own retries would multiply with ours; one retry policy, ours (engine.retry).
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return f"Teacher(model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, system: str, user: str) -> str:
        """The assistant's text for one system + user exchange ("" when the endpoint returns no content).

        Raises TeacherAuthError / TeacherConfigError (fatal), TeacherRequestError (this request only) or
        TeacherUnavailable (transient errors after `attempts` tries).
        """
        openai = self._openai
        extra: dict[str, Any] = {} if self.max_tokens is None else {"max_tokens": self.max_tokens}

        def attempt() -> str:
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    temperature=self.temperature,
                    **extra,
                )
            except openai.APIStatusError as exc:
                self._raise_for_status(exc)
            except openai.APITimeoutError:
                raise Retryable("timed out") from None
            except openai.APIConnectionError:
                raise Retryable("connection failed") from None
            return _content(response)

        def on_retry(note: RetryNote) -> None:
            log.warning("teacher %s: %s; retry %d of %d in %.1fs", self.base_url, note.failure.reason, note.attempt,
                        note.attempts - 1, note.wait_s)
            self.retries += 1

        policy = RetryPolicy(attempts=self.attempts, backoff=Backoff(self.base_delay_s, self.max_delay_s),
                             max_wait_s=self.max_delay_s, max_total_wait_s=self.max_total_wait_s)
        try:
            return call_with_retries(attempt, policy, sleep=self._sleep, on_retry=on_retry)
        except RetriesExhausted as gave_up:
            raise TeacherUnavailable(
                f"The teacher endpoint {self.base_url} kept failing ({gave_up.last.reason}) after {gave_up.attempts} "
                "attempts"
            ) from None

    def _raise_for_status(self, exc: Any) -> NoReturn:
        """The fatal and per-request refusals as our errors, at once; 429 and 5xx as `Retryable`."""
        status = exc.status_code
        # `from None`: the client's exception quotes the server's body, which may echo the key.
        if status in (401, 403):
            raise TeacherAuthError(_AUTH_MESSAGE.format(url=self.base_url, status=status, model=self.model)) from None
        if status == 429 and exc.code == "insufficient_quota":
            raise TeacherAuthError(_QUOTA_MESSAGE.format(url=self.base_url)) from None
        if status == 404:
            raise TeacherConfigError(_NOT_FOUND_MESSAGE.format(url=self.base_url, model=self.model)) from None
        if status != 429 and status < 500:
            raise TeacherRequestError(
                f"The teacher endpoint refused the request (HTTP {status}{_error_code(exc)})") from None
        raise Retryable(f"HTTP {status}", server_wait_s=_retry_after_s(exc)) from None


def _content(response: Any) -> str:
    choices = getattr(response, "choices", None) or []
    return (choices[0].message.content or "") if choices else ""


def _error_code(exc: Any) -> str:
    return f", {exc.code}" if getattr(exc, "code", None) else ""


def _retry_after_s(exc: Any) -> float | None:
    """The server's Retry-After (seconds or an HTTP date) or retry-after-ms, when its answer has one."""
    return retry_after_s(getattr(getattr(exc, "response", None), "headers", None))
