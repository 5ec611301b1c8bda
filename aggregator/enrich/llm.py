"""An OpenAI-compatible chat-completions client for story cards (httpx).

Any server speaking ``POST {base_url}/chat/completions`` works: OpenAI, DeepSeek, a local
Ollama/vLLM/llama.cpp. Per call:

* a concurrency limit (``concurrency`` calls in flight per process) and a wall-clock timeout
  per request (``timeout``, body included: a server that trickles bytes cannot hold a slot);
* bounded retries (``max_retries``) with exponential backoff and jitter on 429, 5xx, timeouts
  and network errors; a Retry-After longer than ``max_inline_wait`` is not slept through but
  handed to the caller (``LLMError.retry_after``), which reschedules the story instead;
* ``response_format``: ``json_schema`` (strict), else ``json_object``, else none; a server
  that answers 400 to the format it was sent is asked again with the next simpler one, and the
  client remembers that;
* the reply is validated strictly (``reply.parse_reply``); every failure is an ``LLMError``;
* each attempt goes through a :class:`BudgetGate` when one is given: reserved before it is
  sent, settled after with the usage the server reported (estimated when it reported none;
  refunded when nothing reached the model).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from aggregator.enrich.errors import LLMError, TokenUsage
from aggregator.enrich.reply import CardReply, card_schema, parse_reply
from aggregator.enrich.sentences import CJK
from aggregator.settings import EnrichSettings

_CJK_CHAR = re.compile(f"[{CJK}]")
_DOWNGRADE = {"json_schema": "json_object", "json_object": "none"}
_FORMAT_HINTS = ("response_format", "json_schema", "json_object", "not supported", "unsupported")


@dataclass(frozen=True, slots=True)
class LLMResult:
    """A validated card reply with the usage it cost and the model that wrote it."""

    reply: CardReply
    usage: TokenUsage
    model: str


class BudgetGate(Protocol):
    """Reserves budget before an attempt and settles it after (``budget.DailyBudget``)."""

    async def reserve(self, prompt_tokens: int, max_output_tokens: int) -> object:
        """Reserve an attempt's worst case; raise ``LLMError("over_budget")`` if it won't fit."""
        ...

    async def settle(self, reservation: object, usage: TokenUsage | None) -> None:
        """Charge ``usage`` instead of the reservation (``None``: nothing was used)."""
        ...


def estimate_tokens(text: str) -> int:
    """A deliberately generous token estimate: a Chinese character ~1 token, else ~4 chars."""
    cjk = len(_CJK_CHAR.findall(text))
    return cjk + (len(text) - cjk + 3) // 4 + 8


def _messages_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _FormatRefused(LLMError):
    """400 to the response_format sent: retry at once with a simpler one."""


def chat_url(base_url: str) -> str:
    """The chat-completions URL under ``base_url`` (a full endpoint URL is kept as is)."""
    base = base_url.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


class LLMClient:
    """Chat-completions calls that return validated cards (see the module docstring)."""

    def __init__(
        self,
        settings: EnrichSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        backoff_base: float = 0.5,
        max_inline_wait: float = 10.0,
    ) -> None:
        self.settings = settings
        self.url = chat_url(settings.llm_base_url)
        self.response_format = settings.llm_response_format
        headers = {"User-Agent": "aggregator/0.1 (story cards)"}
        if settings.llm_api_key:
            headers["Authorization"] = f"Bearer {settings.llm_api_key}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout),
            transport=transport,
            follow_redirects=False,
        )
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff_base = backoff_base
        self._max_inline_wait = max_inline_wait

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The request body for ``messages`` in the current response format."""
        s = self.settings
        body: dict[str, Any] = {
            "model": s.llm_model,
            "messages": messages,
            "temperature": s.llm_temperature,
            "max_tokens": s.llm_max_output_tokens,
        }
        if self.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "story_card", "strict": True, "schema": card_schema()},
            }
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(
        self, messages: list[dict[str, str]], budget: BudgetGate | None = None
    ) -> LLMResult:
        """One card from ``messages``, with retries; raises ``LLMError`` when there is none."""
        attempt = 0
        while True:
            try:
                return await self._attempt(messages, budget)
            except _FormatRefused:
                self.response_format = _DOWNGRADE[self.response_format]
                continue  # at most twice: json_schema -> json_object -> none
            except LLMError as exc:
                if not exc.retryable or attempt >= self.settings.max_retries:
                    raise
                delay = self._backoff_base * 2**attempt * self._rng.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = exc.retry_after
                if delay > self._max_inline_wait:
                    raise
                attempt += 1
                await self._sleep(delay)

    async def _attempt(
        self, messages: list[dict[str, str]], budget: BudgetGate | None
    ) -> LLMResult:
        """One request: take a slot, reserve budget, send, read, settle the budget."""
        prompt_estimate = _messages_tokens(messages)
        worst = TokenUsage(prompt_estimate, self.settings.llm_max_output_tokens, False)
        async with self._slots:
            reservation = None
            if budget is not None:
                reservation = await budget.reserve(worst.prompt, worst.completion)
            charged: TokenUsage | None = None  # what the budget is charged; None refunds
            try:
                response = await self._post(messages)
                outcome = self._read(response, worst)
                charged = outcome.usage
                if isinstance(outcome, LLMError):
                    raise outcome
                return outcome
            except _Unsent as exc:
                raise exc.error from exc.__cause__
            except _Sent as exc:  # the model may have worked on it: keep the worst case charged
                charged = worst
                raise exc.error from exc.__cause__
            finally:
                if budget is not None:
                    await budget.settle(reservation, charged)

    async def _post(self, messages: list[dict[str, str]]) -> httpx.Response:
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._client.post(self.url, json=self.body(messages))
        except (TimeoutError, httpx.TimeoutException) as exc:
            error = LLMError(
                "timeout", f"no complete reply within {self.settings.timeout:g} s", retryable=True
            )
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _Unsent(error) from exc
            raise _Sent(error) from exc
        except httpx.ConnectError as exc:
            raise _Unsent(LLMError("network", f"cannot connect: {exc}", retryable=True)) from exc
        except httpx.HTTPError as exc:
            error = LLMError("network", f"{type(exc).__name__}: {exc}", retryable=True)
            raise _Sent(error) from exc

    def _read(self, response: httpx.Response, worst: TokenUsage) -> LLMResult | LLMError:
        """The result of a response, or the error it amounts to (with its usage attached)."""
        status = response.status_code
        if status != 200:
            snippet = response.text[:200].replace("\n", " ")
            if (
                status == 400
                and self.response_format in _DOWNGRADE
                and any(h in snippet.lower() for h in _FORMAT_HINTS)
            ):
                return _FormatRefused("http_400", f"response_format refused: {snippet}")
            retryable = status == 429 or status >= 500 or status == 408
            return LLMError(
                f"http_{status}",
                f"server answered {status}: {snippet}",
                retryable=retryable,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        try:
            body = response.json()
        except ValueError:
            return LLMError("malformed", "response body is not JSON", usage=worst)
        content, finish, usage = _content(body)
        if usage is None:
            usage = TokenUsage(worst.prompt, estimate_tokens(content or ""), False)
        if content is None:
            return LLMError("malformed", "response has no choices[0].message.content", usage=usage)
        try:
            reply = parse_reply(content)
        except LLMError as exc:
            if finish == "length":
                exc = LLMError(exc.kind, f"{exc} (reply cut at llm_max_output_tokens)")
            exc.usage = usage
            return exc
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return LLMResult(reply, usage, model or self.settings.llm_model)


def _content(body: Any) -> tuple[str | None, str | None, TokenUsage | None]:
    """``(message content, finish_reason, reported usage)`` of a chat-completions body."""
    usage = None
    if isinstance(body, dict):
        raw = body.get("usage")
        if isinstance(raw, dict):
            prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                usage = TokenUsage(max(prompt, 0), max(completion, 0))
            elif isinstance(raw.get("total_tokens"), int):
                usage = TokenUsage(max(raw["total_tokens"], 0), 0)
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            finish = choices[0].get("finish_reason")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return message["content"], finish if isinstance(finish, str) else None, usage
    return None, None, usage


class _Unsent(Exception):
    """The request never reached the server: nothing to charge."""

    def __init__(self, error: LLMError) -> None:
        super().__init__(str(error))
        self.error = error


class _Sent(Exception):
    """The request was sent but no answer was read: the server may have spent tokens."""

    def __init__(self, error: LLMError) -> None:
        super().__init__(str(error))
        self.error = error
