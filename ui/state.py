"""Process-wide resources (loaded once per process with st.cache_resource) and the page guard."""
from __future__ import annotations

import streamlit as st

from retrieval.errors import UserError

from .core import Service, Settings, message


def settings() -> Settings:
    return Settings.from_env()


@st.cache_resource(show_spinner="Loading the index and the model...")
def _service(index_dir: str, engine: str) -> Service:
    return Service(index_dir, engine).warm()


def service(required: bool = True) -> Service | None:
    """The index of this UI (opened once per process); None, with the reason shown, when it can't open."""
    s = settings()
    if s.index_dir is None:
        st.error("No index given: start the UI with `vgg-retrieval ui --index DIR`.")
        return None
    try:
        return _service(str(s.index_dir.resolve()), s.engine)
    except Exception as e:  # noqa: BLE001 - shown in the page
        (st.error if required else st.warning)(message(e))
        return None


def forget_service() -> None:
    """Drop the cached index (after it was created or rebuilt from this page)."""
    _service.clear()


class guard:
    """``with guard():`` shows any error as a message in the page instead of a traceback.

    Streamlit's own control flow (st.rerun, st.stop) derives from BaseException and passes through.
    """

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, UserError):
            st.error(message(exc))
        else:
            st.error(f"Something went wrong: {message(exc)}")
        return True
