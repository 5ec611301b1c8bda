"""The enrichment backend's error: what failed, whether retrying soon can help, and the usage
the server reported (a malformed reply still cost tokens, and the budget is charged for them)."""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.errors import AggregatorError


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one call; ``reported`` is False when the server gave no usage (estimated)."""

    prompt: int
    completion: int
    reported: bool = True

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class LLMError(AggregatorError):
    """An LLM call that produced no card.

    ``kind`` is short and stable (``timeout``, ``network``, ``http_429``, ``http_500``,
    ``malformed``, ``invalid_reply``, ``over_budget``, ...); ``retryable`` says whether an
    immediate retry may succeed (rate limits, server errors, timeouts); ``retry_after`` is the
    server's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        usage: TokenUsage | None = None,
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after
        self.usage = usage
