"""The seed's error codes (E001-E008) as exceptions, plus E000 for the unexpected.

Every failure a user can meet is raised as a `GreenAIError` subclass: it names the code, what
happened and what to do next. The CLI prints `str(error)` and exits non-zero; nothing already
written is removed when one is raised. `UnexpectedError` (E000) is only for a failure inside a
Dagster step that is none of E001-E008 (a bug or an unhandled library error); the README's
"Error codes" section lists every code.
"""

from __future__ import annotations

from greenai_dagster.core.redact import redact  # no secret ever reaches an error message


class GreenAIError(Exception):
    """Base class: `code`, a one-line `message` and a one-line `remedy`."""

    code = "E000"
    default_remedy = "See 'Error codes' in the README."

    def __init__(self, message: str, remedy: str | None = None):
        self.message = redact(message)
        self.remedy = redact(remedy or self.default_remedy)
        super().__init__(f"{self.code}: {self.message} Remedy: {self.remedy}")

    def record(self) -> dict[str, str]:
        """The error as plain data (code, class, message, remedy): how it leaves a Dagster step as the
        failure's metadata (assets/_errors.py) and comes back as this class (`from_record`)."""
        return {"code": self.code, "error_class": type(self).__name__, "message": self.message,
                "remedy": self.remedy}


class UnexpectedError(GreenAIError):
    """E000: a step failed in a way none of E001-E008 describes (its first line is the message)."""

    code = "E000"
    default_remedy = ("An unexpected failure (please report it): the run's logs and traceback are in the Dagster UI "
                      "(`dagster dev -w workspace.yaml`, Runs); results written so far are kept, and re-running with "
                      "the same --name resumes.")


class CoordinatorKeyMissing(GreenAIError):
    code = "E001"
    default_remedy = "Set OPENAI_API_KEY (and OPENAI_BASE_URL for another endpoint), or use the offline planner " \
                     "(--coordinator planner)."


class ModelLoadError(GreenAIError):
    code = "E002"
    default_remedy = "Check the model id or folder path, and access rights (HF_TOKEN) for gated models."


class OutOfMemory(GreenAIError):
    code = "E003"
    default_remedy = "Use a smaller model, fewer calibration samples, or a 4-bit method."


class EvaluationError(GreenAIError):
    """E004: evaluation timed out or could not run (unknown benchmark, failed scorer)."""

    code = "E004"
    default_remedy = "Raise the evaluation timeout, lower the item limit, or pick a listed benchmark."


class CompressionFailed(GreenAIError):
    code = "E005"
    default_remedy = "Check the strategy parameters against the model spec and the library install."


class NetworkError(GreenAIError):
    code = "E006"
    default_remedy = "Check the network / proxy, or use a local model folder and an offline benchmark."


class DiskFull(GreenAIError):
    """E007: disk full, or the output location cannot be written."""

    code = "E007"
    default_remedy = "Free disk space or choose a writable --output-dir."


class QuotaExceeded(GreenAIError):
    code = "E008"
    default_remedy = "Wait for the quota to reset (the client backs off), or use the offline planner."


def from_record(record: dict) -> GreenAIError:
    """The error `GreenAIError.record()` described: its own class when that class is loaded (subclasses such
    as gguf_files.GGUFUnavailable included), else the class of its code, else E000 with its message."""
    classes, todo = [], [GreenAIError]
    while todo:
        cls = todo.pop(0)
        classes.append(cls)
        todo.extend(cls.__subclasses__())
    code, name = record.get("code"), record.get("error_class")
    same_name = [cls for cls in classes if cls.__name__ == name and cls.code == code]
    same_code = [cls for cls in GreenAIError.__subclasses__() if cls.code == code]   # E001-E008, E000
    cls = (same_name or same_code or [UnexpectedError])[0]
    return cls(str(record.get("message") or "a step failed without a message."), record.get("remedy"))
