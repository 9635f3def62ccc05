"""Errors that the command line turns into one clear line and an exit code.

``UsageError`` (exit 2): the user asked for something malformed — an unknown name, a bad value,
an option combination that cannot work. ``LorikitError`` (exit 1): the request was well formed
but could not be carried out — a missing or corrupt file, mismatched adapters, a data row
without a required field. Messages name the file, field or key at fault.
"""

from __future__ import annotations


class LorikitError(Exception):
    """A runtime failure with a one-line, user-facing message (exit code 1)."""

    exit_code = 1


class UsageError(LorikitError):
    """A malformed request: unknown name, bad value, impossible option combination (exit code 2)."""

    exit_code = 2
