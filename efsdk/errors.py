"""One exception hierarchy for efsdk; every message says what to do about it."""

from __future__ import annotations


class EfsdkError(Exception):
    """Base class of all efsdk errors."""


class ConfigError(EfsdkError, ValueError):
    """Invalid user configuration (CLI flags, config files)."""


class ProtocolError(EfsdkError, ValueError):
    """Malformed wire data that cannot be counted and skipped."""


class NativeError(EfsdkError, RuntimeError):
    """The native extension is missing, stale, or returned an error."""
