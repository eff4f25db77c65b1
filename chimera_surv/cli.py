"""One error style for every command: a user mistake is exit 2 and one line `error: ...`, never a traceback.

A mistake the user fixes (a missing path, a missing column or key, a bad flag value) is raised as `UserError`
(or one of the exception types a command declares as user errors) and printed as one line naming the file, key
or flag. Anything else is a bug: it keeps its traceback and exit 1. Stdlib only, so the cheap checks of a command
(`require_path`, `require_columns`) run before its heavy imports (torch, sksurv).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

USAGE_EXIT = 2  # argparse's own exit status for a bad flag


class UserError(Exception):
    """A mistake the user fixes; the message names the file, key or flag (one line)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one `error: ...` line (argparse prints the usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return text


def run_cli(body: Callable[[], int], *, user_errors: tuple[type[BaseException], ...] = (UserError,),
            debug: bool = False, log: logging.Logger | None = None) -> int:
    """Run a command's body: a user error → `error: ...` on stderr and exit 2 (its traceback only in a log file
    when one is open, or on the console with `debug`); every other exception propagates (traceback, exit 1)."""
    try:
        return body()
    except user_errors as exc:
        if log is not None and any(isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers):
            log.exception("user error")
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return USAGE_EXIT


def require_path(path: Path | str, what: str, kind: str = "any") -> Path:
    """`path` exists (kind "file" / "dir" / "any"), else a UserError naming `what` (a flag or an argument)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what}: {path} does not exist")
    if kind == "file" and not path.is_file():
        raise UserError(f"{what}: {path} is not a file")
    if kind == "dir" and not path.is_dir():
        raise UserError(f"{what}: {path} is not a folder")
    return path


def csv_header(path: Path) -> list[str] | None:
    """The header row of a CSV/TSV (cheap: one line is read; the delimiter is `,`, `;` or tab, whichever the line
    holds most of, as chimera_surv/readers/table.py decides). None when the first line is not plain UTF-8 text:
    the full reader then decides."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            line = next((text for text in handle if text.strip()), "")
    except UnicodeDecodeError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the table ({one_line(exc)})") from exc
    delimiter = max((",", ";", "\t"), key=lambda d: (line.count(d), d == ","))
    return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]


def require_columns(path: Path, columns: Iterable[str], what: str) -> None:
    """The CSV's header holds every one of `columns` (named by `what`, e.g. a flag), else a UserError."""
    header = csv_header(path)
    missing = [c for c in columns if header is not None and c not in header]
    if missing:
        raise UserError(f"{path}: no column {', '.join(map(repr, missing))} ({what}); columns: {header[:20]}")
