"""One lifecycle for everything that owns a socket, a file or a thread.

Subclasses implement :meth:`_release`; :class:`Resource` makes ``close()``
idempotent, gives the context-manager protocol, and warns (``ResourceWarning``)
about an instance collected while still open, then releases it.
"""

from __future__ import annotations

import warnings
from types import TracebackType
from typing import Self


class Resource:
    """Base class: ``close()`` safe to call twice, ``with`` support, leak warnings."""

    _closed = True  # until a subclass's __init__ has acquired something

    def _opened(self) -> None:
        """Call once the resource is acquired (from the subclass's ``__init__``)."""
        self._closed = False

    def _release(self) -> None:
        """Free what the subclass holds; called at most once."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the resource; safe to call any number of times."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._closed:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            self.close()
