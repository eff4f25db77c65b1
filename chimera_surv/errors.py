"""One readable line for any exception, for the DEGRADED log and error messages.

Why: some exceptions carry no message (`MemoryError()`, an empty `RecursionError`), and a log line that says only
`MemoryError:` does not tell the reader what happened.
"""

from __future__ import annotations

_DEFAULT_CAUSE = {MemoryError: "out of memory", RecursionError: "nested too deeply",
                  OverflowError: "number too large", KeyError: "missing key"}


def describe(exc: BaseException) -> str:
    """`Type: message`, with a readable cause where the exception has none."""
    message = str(exc).strip()
    if not message:
        message = next((text for kind, text in _DEFAULT_CAUSE.items() if isinstance(exc, kind)), "no message")
    return f"{type(exc).__name__}: {message}"
