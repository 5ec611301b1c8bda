"""The OpenAI-compatible client against a real chat-completions server on 127.0.0.1.

Good, fenced, malformed and wrong-schema replies; 500, 429 with Retry-After, a reply slower
than the timeout; a server that refuses json_schema; the concurrency limit; the budget gate
charged with reported usage, estimates or nothing. Timeouts are a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from aggregator.enrich.errors import LLMError, TokenUsage
from aggregator.enrich.inputs import CardInput
from aggregator.enrich.llm import LLMClient, chat_url, retry_after_seconds
from aggregator.enrich.prompt import build_messages, is_foreign
from aggregator.enrich.reply import parse_reply
from aggregator.settings import EnrichSettings
from tests.llmserver import LLMServer, good_card

INP = CardInput(
    story_id=1,
    title="腾讯、阿里洽谈投资 DeepSeek",
    text="据报道，腾讯和阿里巴巴正在洽谈投资深度求索（DeepSeek）。",
    language="zh-cn",
    publisher="IT之家",
    url="https://www.ithome.example/0/900/101.htm",
    reports=2,
    others=(("The Verge", "Tencent and Alibaba eye DeepSeek"),),
)
MESSAGES = build_messages(INP, language="en", max_chars=2000)


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


def settings(server: LLMServer, **over: object) -> EnrichSettings:
    base: dict[str, object] = {
        "llm_enabled": True,
        "llm_base_url": server.base_url,
        "llm_model": "fake-model",
        "llm_api_key": "sk-test",
        "timeout": 0.5,
        "max_retries": 1,
        "llm_max_output_tokens": 300,
    }
    base.update(over)
    return EnrichSettings(**base)  # type: ignore[arg-type]


def client(server: LLMServer, **over: object) -> LLMClient:
    return LLMClient(settings(server, **over), backoff_base=0.01, max_inline_wait=1.5)


class RecordingGate:
    """A budget gate that grants everything and records what it is charged."""

    def __init__(self, refuse: bool = False) -> None:
        self.reserved: list[tuple[int, int]] = []
        self.settled: list[TokenUsage | None] = []
        self.refuse = refuse

    async def reserve(self, prompt_tokens: int, max_output_tokens: int) -> object:
        if self.refuse:
            raise LLMError("over_budget", "no budget left")
        self.reserved.append((prompt_tokens, max_output_tokens))
        return len(self.reserved)

    async def settle(self, reservation: object, usage: TokenUsage | None) -> None:
        self.settled.append(usage)


# ------------------------------------------------------------------ replies


async def test_good_reply_is_validated_and_the_request_is_well_formed(llm: LLMServer) -> None:
    gate = RecordingGate()
    async with client(llm) as c:
        result = await c.complete(MESSAGES, gate)
    assert result.reply.tldr == f"Summary of: {INP.title}"
    assert result.reply.key_takeaways == ["First point", "Second point"]
    assert result.model == "fake-model-1" and result.usage == TokenUsage(120, 80)
    body = llm.requests[0]
    assert body["model"] == "fake-model" and body["max_tokens"] == 300
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert "English" in body["messages"][0]["content"]
    assert llm.headers[0]["authorization"] == "Bearer sk-test"
    assert gate.reserved[0][1] == 300 and gate.reserved[0][0] > 50
    assert gate.settled == [TokenUsage(120, 80)]


async def test_json_embedded_in_prose_and_a_fence_is_found(llm: LLMServer) -> None:
    llm.mode = "fenced"
    async with client(llm) as c:
        result = await c.complete(MESSAGES)
    assert result.reply.what_changed == "Something changed."


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("malformed", "malformed", "no JSON object"),
        ("wrong_schema", "invalid_reply", "tldr"),
        ("bad_body", "malformed", "not JSON"),
    ],
)
async def test_bad_replies_are_clear_errors_charged_and_not_retried(
    llm: LLMServer, mode: str, kind: str, words: str
) -> None:
    llm.mode = mode
    gate = RecordingGate()
    async with client(llm) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES, gate)
    assert caught.value.kind == kind and words in str(caught.value)
    assert llm.calls() == 1  # a bad reply is not asked for again at once
    assert len(gate.settled) == 1 and gate.settled[0] is not None  # tokens were spent


async def test_usage_is_estimated_when_the_server_reports_none(llm: LLMServer) -> None:
    llm.usage = None
    gate = RecordingGate()
    async with client(llm) as c:
        result = await c.complete(MESSAGES, gate)
    assert not result.usage.reported
    assert result.usage.prompt == gate.reserved[0][0] and result.usage.completion > 20


# ------------------------------------------------------------------ failures and retries


async def test_server_error_is_retried_then_succeeds(llm: LLMServer) -> None:
    llm.script("http_500")
    gate = RecordingGate()
    async with client(llm) as c:
        result = await c.complete(MESSAGES, gate)
    assert result.reply.tldr.startswith("Summary of:")
    assert llm.statuses == [500, 200]
    assert gate.settled == [None, TokenUsage(120, 80)]  # the 500 cost nothing: refunded


async def test_persistent_server_error_gives_up_after_max_retries(llm: LLMServer) -> None:
    llm.mode = "http_500"
    async with client(llm, max_retries=2) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES)
    assert caught.value.kind == "http_500" and caught.value.retryable
    assert llm.calls() == 3


async def test_rate_limit_waits_for_retry_after_when_short(llm: LLMServer) -> None:
    llm.script("http_429")
    llm.retry_after = "1"
    started = time.monotonic()
    async with client(llm) as c:
        await c.complete(MESSAGES)
    assert llm.statuses == [429, 200]
    assert time.monotonic() - started >= 0.95


async def test_rate_limit_with_long_retry_after_is_handed_to_the_caller(llm: LLMServer) -> None:
    llm.mode = "http_429"
    llm.retry_after = "120"
    async with client(llm) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES)
    assert caught.value.kind == "http_429" and caught.value.retry_after == 120.0
    assert llm.calls() == 1  # not slept through


async def test_slow_reply_times_out_within_the_bound_and_is_charged(llm: LLMServer) -> None:
    llm.mode = "slow"
    llm.delay = 5.0
    gate = RecordingGate()
    started = time.monotonic()
    async with client(llm, timeout=0.3, max_retries=1) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES, gate)
    elapsed = time.monotonic() - started
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert llm.calls() == 2
    assert elapsed < 1.5  # two attempts of 0.3 s and a short backoff, not 5 s
    assert all(u is not None and not u.reported for u in gate.settled)  # worst case kept


async def test_unreachable_server_is_a_network_error_and_nothing_is_charged() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gate = RecordingGate()
    es = EnrichSettings(
        llm_enabled=True, llm_base_url=f"http://127.0.0.1:{port}/v1", llm_model="m",
        timeout=0.5, max_retries=0,
    )  # fmt: skip
    async with LLMClient(es) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES, gate)
    assert caught.value.kind == "network"
    assert gate.settled == [None]


async def test_refused_json_schema_falls_back_to_json_object_and_remembers(
    llm: LLMServer,
) -> None:
    llm.mode = "refuse_schema"
    async with client(llm) as c:
        await c.complete(MESSAGES)
        await c.complete(MESSAGES)
        assert c.response_format == "json_object"
    formats = [(r.get("response_format") or {}).get("type") for r in llm.requests]
    assert formats == ["json_schema", "json_object", "json_object"]


async def test_over_budget_gate_stops_the_call_before_it_is_sent(llm: LLMServer) -> None:
    async with client(llm) as c:
        with pytest.raises(LLMError) as caught:
            await c.complete(MESSAGES, RecordingGate(refuse=True))
    assert caught.value.kind == "over_budget"
    assert llm.calls() == 0


async def test_concurrency_limit_bounds_calls_in_flight(llm: LLMServer) -> None:
    llm.mode = "slow"
    llm.delay = 0.15
    async with client(llm, concurrency=2, timeout=2.0) as c:
        results = await asyncio.gather(*(c.complete(MESSAGES) for _ in range(6)))
    assert len(results) == 6 and llm.calls() == 6
    assert llm.peak == 2


# ------------------------------------------------------------------ pure parts


def test_reply_validation_rejects_missing_and_mistyped_fields() -> None:
    good = good_card("h")
    assert parse_reply(json.dumps(good)).tldr == "Summary of: h"
    for broken, where in [
        ({k: v for k, v in good.items() if k != "why_it_matters"}, "why_it_matters"),
        ({**good, "key_takeaways": "one"}, "key_takeaways"),
        ({**good, "tldr": ""}, "tldr"),
        ({**good, "key_takeaways": ["x"] * 9}, "key_takeaways"),
        ({**good, "title": 3}, "title"),
    ]:
        with pytest.raises(LLMError) as caught:
            parse_reply(json.dumps(broken))
        assert caught.value.kind == "invalid_reply" and where in str(caught.value)


def test_retry_after_parsing_and_chat_url() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    date = "Sat, 28 Nov 2026 12:00:30 GMT"
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()
    assert retry_after_seconds(date, now) == 30.0
    assert chat_url("http://h/v1/") == "http://h/v1/chat/completions"
    assert chat_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"


def test_prompt_asks_for_a_translated_title_only_for_foreign_stories() -> None:
    assert is_foreign(INP, "en") and not is_foreign(INP, "zh-CN")
    english = CardInput(1, "Nvidia ships Blackwell", "Body.", "en", "Verge", None, 1)
    assert not is_foreign(english, "en") and is_foreign(english, "zh")
    assert "translated faithfully into English" in MESSAGES[0]["content"]
    zh = build_messages(INP, language="zh", max_chars=10)
    assert "Simplified Chinese" in zh[0]["content"] and '"title": null' in zh[0]["content"]
    assert "…" in zh[1]["content"]  # the text was cut at max_chars
