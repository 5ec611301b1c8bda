"""The LLM's answer: the JSON schema we ask for, and strict validation of what came back (pure).

Servers differ: some honour ``response_format`` json_schema, some only json_object, some
ignore it and wrap the JSON in prose or a Markdown code fence. :func:`parse_reply` takes the
message content, finds the JSON object (the whole content, a fenced block, or the first
decodable ``{...}`` in it) and validates it with pydantic: every field must be there with the
right type and a sane length. Anything else is an ``LLMError`` naming what was wrong, never a
crash and never a half-filled card.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from aggregator.enrich.errors import LLMError

MAX_SCAN = 20  # "{" positions tried when the JSON is embedded in text

Short = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1500)]
Takeaway = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class CardReply(BaseModel):
    """The card fields an LLM must return (strict: no type coercion, unknown keys ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)] | None = None
    tldr: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1500)]
    what_changed: Short
    why_it_matters: Short
    what_to_do_next: Short
    who_should_care: Short
    key_takeaways: list[Takeaway] = Field(max_length=8)


def card_schema() -> dict[str, Any]:
    """JSON Schema of the reply, in the form OpenAI's strict structured outputs accept
    (every property required, no additional properties; ``title`` may be null)."""
    text = {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "title": {"type": ["string", "null"]},
            "tldr": text,
            "what_changed": text,
            "why_it_matters": text,
            "what_to_do_next": text,
            "who_should_care": text,
            "key_takeaways": {"type": "array", "items": text, "maxItems": 8},
        },
        "required": [
            "title",
            "tldr",
            "what_changed",
            "why_it_matters",
            "what_to_do_next",
            "who_should_care",
            "key_takeaways",
        ],
        "additionalProperties": False,
    }


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(content: str) -> Any:
    """The JSON object in ``content``: all of it, a fenced block, or the first ``{...}``.

    Raises ``LLMError("malformed")`` when there is none.
    """
    text = content.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(text):
        try:
            return json.loads(block)
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(MAX_SCAN):
        if start < 0:
            break
        try:
            value, _end = decoder.raw_decode(text, start)
            return value
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    snippet = text[:80].replace("\n", " ")
    raise LLMError("malformed", f"reply holds no JSON object (starts {snippet!r})")


def parse_reply(content: str) -> CardReply:
    """Validate the message content as a card; ``LLMError`` naming the field otherwise."""
    data = extract_json(content)
    if not isinstance(data, dict):
        raise LLMError("invalid_reply", f"expected a JSON object, got {type(data).__name__}")
    try:
        return CardReply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise LLMError("invalid_reply", f"{where}: {first['msg']}{more}") from exc
