"""Persistence: SQLAlchemy Core schema, engines and migrations, and the repository.

``make_engine`` + ``upgrade`` prepare a database (SQLite file or PostgreSQL); ``Repository`` is
the only object the rest of the daemon uses to read and write it.
"""

from aggregator.store.db import make_engine, masked_url, schema_is_current, upgrade
from aggregator.store.repo import DuplicateSourceError, Repository, story_public_id

__all__ = [
    "DuplicateSourceError",
    "Repository",
    "make_engine",
    "masked_url",
    "schema_is_current",
    "story_public_id",
    "upgrade",
]
