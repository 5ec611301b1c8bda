"""One exception tree for the whole daemon.

Foreign exceptions (httpx, SQLAlchemy, tomllib, feedparser) are mapped to these at exactly one
boundary each, always with ``raise ... from exc`` so the cause is kept.
"""


class AggregatorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(AggregatorError):
    """The configuration is invalid; the message names the file, the key and the problem."""


class FetchError(AggregatorError):
    """A publisher could not be fetched (network, HTTP status, size cap, redirects)."""

    def __init__(self, error_class: str, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.status_code = status_code


class ParseError(AggregatorError):
    """A response body is not a feed we can read (HTML page, empty body, garbage)."""


class StorageError(AggregatorError):
    """The database refused an operation or is unreachable."""


class SourceURLRejected(AggregatorError):
    """A source URL was refused (bad scheme, or resolves to a private address)."""
