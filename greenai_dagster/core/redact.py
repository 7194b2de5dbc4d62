"""Keep secrets (API keys, tokens, passwords) out of everything this project writes or prints.

Applied where text leaves the process: every `GreenAIError` message and remedy, every DuckDB write
(`core.storage.store`), every JSON report (`core.reporting.report.write_json`), the CLI's progress lines and log
records (`install_log_filter`), and the reasoning an LLM coordinator returns. Two sources:
- the values of environment variables whose names say they are secret (`*KEY*`, `*TOKEN*`,
  `*SECRET*`, `*PASSWORD*`, `*CREDENTIAL*`; 8 characters or longer), e.g. OPENAI_API_KEY, HF_TOKEN;
- the shapes of well-known keys (`sk-...`, `hf_...`, `Bearer ...`), `key=value` pairs whose key
  names a secret, and credentials in URLs (`https://user:password@host`).
"""

from __future__ import annotations

import logging
import os
import re

MASK = "[REDACTED]"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
NOT_SECRET_NAMES = {"TOKENIZERS_PARALLELISM", "KEYBOARD", "HF_HUB_DISABLE_IMPLICIT_TOKEN", "SSH_AUTH_SOCK"}
MIN_SECRET_LEN = 8
PATTERNS = [
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"), MASK),                         # OpenAI-style keys
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), MASK),                            # Hugging Face tokens
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,})"), MASK),                   # GitHub tokens
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"), r"\1" + MASK),
    # key=value / "key": "value" where the key is exactly a secret's name (not e.g. `per_token`)
    (re.compile(r"(?i)(?<![A-Za-z0-9_])((?:api[_-]?key|access[_-]?token|auth[_-]?token|token|secret|password|passwd)"
                r"[\"']?\s*[:=]\s*[\"']?)(?![\d.]+(?:[\s\"',;}]|$))([^\s\"'&,;}{]{8,})"), r"\1" + MASK),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)([^/\s:@]+):([^/\s@]+)@"), r"\1\2:" + MASK + "@"),
]
SECRET_KEYS = re.compile(r"(?i)^((openai|hf|llm)?[_-]?api[_-]?key|(access|auth|api|hf|bearer|refresh)?[_-]?token|"
                         r"(client[_-]?)?secret|password|passwd|authorization|credentials?)$")


def secret_values() -> list[str]:
    """Values of secret-named environment variables, longest first (so none is masked half)."""
    values = {value for name, value in os.environ.items()
              if SECRET_NAME.search(name) and name.upper() not in NOT_SECRET_NAMES and len(value) >= MIN_SECRET_LEN
              and not value.isdigit() and value.lower() not in ("true", "false")}
    return sorted(values, key=len, reverse=True)


def redact(text):
    """`text` with every secret replaced by [REDACTED]; anything not a string is returned as is."""
    if not isinstance(text, str) or not text:
        return text
    for value in secret_values():
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_obj(obj):
    """A copy of a JSON-like structure with secrets masked in every string and under every secret-named key."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: (MASK if isinstance(k, str) and SECRET_KEYS.match(k) and isinstance(v, str) and v
                    else redact_obj(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's formatted message (attached to handlers, so it sees every record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left to logging's own handling
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter() -> None:
    """Attach the filter to the root logger's handlers (and to it, for records logged there)."""
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
