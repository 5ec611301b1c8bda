"""aggregator: a self-hosted feed aggregation daemon.

Polls publisher feeds, recognises items and stories across publishers, stores them in a
database and re-exports curated editions as RSS 2.0, Atom 1.0 and JSON Feed 1.1.
"""

__version__ = "0.1.0"
