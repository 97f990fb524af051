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


class OrderError(EfsdkError, ValueError):
    """An order request the SDK refuses before it reaches the wire (bad arguments, unknown order)."""


class RiskRejected(OrderError):
    """Pre-trade risk blocked an order; ``reason`` is a stable code, the message says which limit and by how much."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"risk: {message}")
        self.reason = reason


class PublishError(EfsdkError, RuntimeError):
    """The book fan-out cannot go on (a publisher sidecar died or stopped answering)."""


class SessionError(EfsdkError, ConnectionError):
    """An order-entry or feed session failed (login rejected, connection lost beyond retries)."""
