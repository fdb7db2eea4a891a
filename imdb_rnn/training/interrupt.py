"""Ctrl-C (SIGINT) or SIGTERM asks the training loop to save and stop after the current batch."""

from __future__ import annotations

import signal


class StopRequest:
    """A context manager whose `requested` turns True on SIGINT or SIGTERM.

    A second Ctrl-C stops at once (KeyboardInterrupt). Outside the main thread no handler can be
    set, and the signals keep their usual effect.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopRequest":
        try:
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:
            self._old = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)
