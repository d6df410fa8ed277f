"""lmpipe's errors, in three families that decide what happens next.

- ``InputError``: this input is bad (corrupt WARC, Parquet without ``text``, wrong token shards). Retrying cannot
  help; the message names the file (and offset).
- ``ConfigError``: the configuration or the request is wrong (unknown stage, bad crawl id, missing model file).
- ``TransientError``: the world may be different in a moment (a remote read that broke off). Retried with backoff.

All three derive from ``LmpipeError``, so a caller (the CLI, the retry policy) can tell lmpipe's own, explained
failures from bugs. Each also keeps the built-in base it had before (ValueError, FileNotFoundError,
ConnectionError), so code catching those still works.

Two more are deterministic too: ``NonFiniteLossError`` (a ``ConfigError``: training diverged) and ``DiskFullError``
(an ``LmpipeError`` and an ``OSError``, like the failed write it replaces: nothing changes until someone frees space).
"""

from __future__ import annotations

import errno


class LmpipeError(Exception):
    """Base of every error lmpipe raises on purpose (its message says what to do)."""


class InputError(LmpipeError, ValueError):
    """An input file is unusable: deterministic, never retried."""


class ConfigError(LmpipeError, ValueError):
    """A configuration value or request is wrong: deterministic, never retried."""


class TransientError(LmpipeError, ConnectionError):
    """A fault that may pass (network, remote store): retried with backoff."""


class NonFiniteLossError(ConfigError):
    """Training diverged: the loss (or the weights about to be checkpointed) became NaN or infinite.

    Deterministic: the same config on the same data diverges again at the same step, so it is never retried; the
    usual causes are a learning rate too high for the model, no gradient clipping, or fp16 without loss scaling.
    Raised before the optimizer steps on the bad loss and before a checkpoint with such weights is written, so the
    run's last checkpoint stays the last good one.
    """

    def __init__(self, step: int, what: str, value: float) -> None:
        super().__init__(
            f"{what} is {value} at step {step}: training diverged; no checkpoint is written from this step on, the "
            "last one is kept (lower learning_rate, or check grad_clip and precision)"
        )
        self.step, self.what, self.value = step, what, value

    def __reduce__(self) -> tuple[type, tuple[int, str, float]]:
        return type(self), (self.step, self.what, self.value)


# A full file system: no space left (ENOSPC) or the user's quota exceeded (EDQUOT).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(LmpipeError, OSError):
    """A write failed because its file system is full (ENOSPC) or over quota (EDQUOT).

    Deterministic until someone frees space, so it fails at once instead of being retried; the message names the
    file that did not fit, the space left beside it and how much of the file had been written (the space still free
    can read 0 while a forked process keeps the removed partial file open).
    """

    def __init__(self, path: str, free_bytes: int | None, cause: OSError, written_bytes: int | None = None) -> None:
        facts = ["free space unknown" if free_bytes is None else f"{free_bytes:,} bytes free there"]
        if written_bytes is not None:
            facts.append(f"a partial file of {written_bytes:,} bytes was written and removed")
        self.message = f"{path}: {cause.strerror or 'disk full'} ({'; '.join(facts)}); free space, then rerun"
        super().__init__(cause.errno, self.message, path)
        self.path, self.free_bytes, self.cause, self.written_bytes = path, free_bytes, cause, written_bytes

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str, int | None, OSError, int | None]]:
        cause = OSError(self.cause.errno, self.cause.strerror)
        return type(self), (self.path, self.free_bytes, cause, self.written_bytes)
