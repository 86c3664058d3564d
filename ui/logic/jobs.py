"""Work on a thread of its own that a page polls: start it, ask whether it runs, wait, cancel.
Nothing here imports Streamlit."""

from __future__ import annotations

import threading


class BackgroundJob:
    """A daemon thread running ``_run``; ``cancel`` sets an event that ``_run`` checks (``cancelled``)."""

    def __init__(self, name: str):
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self):
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """True when the job has ended (within ``timeout`` seconds)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()
