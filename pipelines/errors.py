"""lmpipe's errors, in three families that decide what happens next.

- ``InputError``: this input is bad (corrupt WARC, Parquet without ``text``, wrong token shards). Retrying cannot
  help; the message names the file (and offset).
- ``ConfigError``: the configuration or the request is wrong (unknown stage, bad crawl id, missing model file).
- ``TransientError``: the world may be different in a moment (a remote read that broke off). Retried with backoff.

All three derive from ``LmpipeError``, so a caller (the CLI, the retry policy) can tell lmpipe's own, explained
failures from bugs. Each also keeps the built-in base it had before (ValueError, FileNotFoundError,
ConnectionError), so code catching those still works.
"""

from __future__ import annotations


class LmpipeError(Exception):
    """Base of every error lmpipe raises on purpose (its message says what to do)."""


class InputError(LmpipeError, ValueError):
    """An input file is unusable: deterministic, never retried."""


class ConfigError(LmpipeError, ValueError):
    """A configuration value or request is wrong: deterministic, never retried."""


class TransientError(LmpipeError, ConnectionError):
    """A fault that may pass (network, remote store): retried with backoff."""
