"""Retry policy shared by all stage tasks: transient faults retry with exponential backoff + jitter,
deterministic ones (bad config, corrupt input, a full disk, a diverged training run) fail at once.

Fault injection for tests: ``LMPIPE_FAIL_FIRST_ATTEMPT=extract,filter`` makes those tasks raise a transient
error on their first attempt (retries then have to recover with identical outputs).
"""

from __future__ import annotations

import os
from typing import Any

from prefect.tasks import exponential_backoff
from pydantic import ValidationError

from pipelines.errors import DISK_FULL_ERRNOS, ConfigError, DiskFullError, InputError, TransientError

# lmpipe's own families first (pipelines/errors.py), then the built-ins third-party code raises.
DETERMINISTIC = (
    InputError,
    ConfigError,
    DiskFullError,
    ValidationError,
    FileNotFoundError,
    ValueError,
    TypeError,
    KeyError,
)
TRANSIENT = (TransientError, ConnectionError, TimeoutError, OSError)


class InjectedFault(TransientError):
    """A transient fault raised on purpose (LMPIPE_FAIL_FIRST_ATTEMPT)."""


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """retry_condition_fn: retry only errors that may go away by themselves."""
    try:
        state.result()
    except DETERMINISTIC:
        return False
    except TRANSIENT as e:
        # A full disk stays full until someone frees space: writes outside pipelines/shards.py raise it as a bare
        # OSError, not as DiskFullError.
        return not (isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS)
    except Exception:
        return False
    return False


def maybe_inject_fault(stage: str, attempt: int, part_of: str | None = None) -> None:
    """Fail the first attempt of ``stage`` (or of every phase of the composite ``part_of``) when it is listed in
    LMPIPE_FAIL_FIRST_ATTEMPT."""
    listed = os.environ.get("LMPIPE_FAIL_FIRST_ATTEMPT", "").split(",")
    if attempt == 0 and (stage in listed or (part_of is not None and part_of in listed)):
        raise InjectedFault(f"injected transient fault in {stage} (attempt {attempt})")


RETRY_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient,
}
