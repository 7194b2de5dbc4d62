"""Reading a file a user named (a config, a sweep): every way it can fail becomes one clear E004."""

from __future__ import annotations

from pathlib import Path

from greenai_dagster.core.errors import EvaluationError


def read_user_text(path: Path, what: str, expected: str) -> str:
    """The UTF-8 text of `path`, or E004 naming it (`what`: "config file", "sweep file") and what is wrong:
    missing, a directory, not UTF-8, unreadable. `expected` completes the remedy ("a JSON file to --config")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvaluationError(f"{what} '{path}' not found.", f"Pass an existing {expected.removeprefix('a ')}.") from None
    except IsADirectoryError:
        raise EvaluationError(f"{what} '{path}' is a directory.", f"Pass {expected}.") from None
    except UnicodeDecodeError:
        raise EvaluationError(f"{what} '{path}' is not UTF-8 text.", f"Save it as UTF-8 and pass {expected}.") from None
    except OSError as exc:
        raise EvaluationError(f"{what} '{path}' cannot be read ({exc.strerror}).",
                              "Check the path and its permissions.") from None
