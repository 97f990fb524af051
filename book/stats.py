"""Counters for everything the book refused or could not reconcile."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class BookStats:
    """Anomaly and activity counters; every drop has one here."""

    records: int = 0  # op records applied by the builder
    executions: int = 0  # E/C applied to a live order
    other_messages: int = 0  # non-book messages seen with no handler installed
    unknown_ref: int = 0  # E/C/X/D/U for an order not live in the book
    duplicate_ref: int = 0  # add of a ref that is already live (the add is dropped)
    over_execution: int = 0  # executed more than rested (order removed)
    over_cancel: int = 0  # cancelled more than rested (order removed)
    bad_shares: int = 0  # add with 0 or > 2**32-1 shares (dropped)
    bad_op: int = 0  # op word that is no known record type (corrupt op stream)
    anomalies: int = 0  # malformed input reported by the decoder
    crossed_books: int = 0  # books found crossed at the last check_crossed()

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def dropped(self) -> int:
        """Events the book could not apply."""
        return self.unknown_ref + self.duplicate_ref + self.bad_shares + self.bad_op
