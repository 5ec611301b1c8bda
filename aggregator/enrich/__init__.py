"""Story cards: what a reader gets besides the headline, made once per story, off the hot path.

* ``sentences`` - sentence splitting for Chinese and Latin text (sentencex + ``；``);
* ``inputs`` - what a card is made from (the lead report, the report count) and its hash;
* ``extractive`` - the offline card: TL;DR of lead sentences, and tags (``tags``);
* ``prompt`` / ``reply`` / ``llm`` - the optional OpenAI-compatible backend: messages, strict
  validation of the JSON reply, the httpx client (timeouts, retries, response formats);
* ``budget`` - the daily token/cost budget shared by replicas through the database;
* ``worker`` - the job that picks stories, writes cards, calls the LLM and re-renders editions.
"""

from aggregator.enrich.errors import LLMError, TokenUsage
from aggregator.enrich.worker import Enricher, EnrichReport, open_enricher

__all__ = ["EnrichReport", "Enricher", "LLMError", "TokenUsage", "open_enricher"]
