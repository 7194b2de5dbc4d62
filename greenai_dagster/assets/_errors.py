"""The one place where a project error leaves a Dagster step: every asset and check body that calls the core
runs inside `core_step(context)`.

A `GreenAIError` raised there becomes Dagster's public `Failure`: its description is the E00N line the CLI
prints (`E005: what happened. Remedy: what to do.`), shown first in the UI's step failure, and its metadata is
the error as data (`GreenAIError.record()`: code, error_class, message, remedy), which `greenai run`
(runner.py) turns back into the same class with `errors.from_record`, no text parsed. Any other exception is
a bug and is left to Dagster as it is (`greenai run` reports it as E000 with its message).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from dagster import Failure, MetadataValue

from greenai_dagster.core.errors import GreenAIError, NetworkError, QuotaExceeded
from greenai_dagster.instance import LOG_FILE_TAG

# Only errors a later try can get past let a retry policy (none is set today) run the step again: a bad
# model id, setting or checkpoint (E001, E002, E004, E005), a full disk or memory (E003, E007) fail the same way.
RETRYABLE = (NetworkError, QuotaExceeded)


@contextlib.contextmanager
def core_step(context) -> Iterator[None]:
    """Run a step body's core calls: say in the step's log where the libraries' output goes (a `greenai run`
    run names its log file in the tag `greenai/log_file`), and raise a project error as a `Failure` that
    carries it, and that file, as metadata."""
    log_file = context.run.tags.get(LOG_FILE_TAG)
    if log_file:
        context.log.info(f"library output of this run (loguru, tqdm, warnings): {log_file}")
    try:
        yield
    except GreenAIError as exc:
        metadata: dict = dict(exc.record())
        if log_file:
            metadata["library_log"] = MetadataValue.path(log_file)
        raise Failure(description=str(exc), metadata=metadata,
                      allow_retries=isinstance(exc, RETRYABLE)) from exc
