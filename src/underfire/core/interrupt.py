"""Ctrl-C honoured between training steps, so a saved state is always one whole step."""

from __future__ import annotations

from typing import Any

__all__ = ["DeferredInterrupt"]


class DeferredInterrupt:
    """Turn Ctrl-C (SIGINT) into a request honoured between training steps.

    A KeyboardInterrupt raised in the middle of ``optimizer.step()`` would leave half-updated
    weights; saving those would make the resumed run differ from an uninterrupted one. The
    first Ctrl-C sets :attr:`requested`; the trainer saves after the step and raises
    KeyboardInterrupt itself. A second Ctrl-C interrupts at once. Outside the main thread
    (where signal handlers cannot be set) Ctrl-C behaves as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> DeferredInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._installed:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
