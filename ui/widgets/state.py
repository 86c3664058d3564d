"""Process-wide resources (loaded once per process with st.cache_resource) and the page guard."""

from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from retrieval import UserError
from ui.logic import IndexingJob, Outcome, Service, Settings, message


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


@st.cache_resource
def _indexing_jobs() -> tuple[threading.Lock, dict[str, IndexingJob]]:
    """Indexing jobs of this process by index folder: a page reload (or another tab) finds a running one."""
    return threading.Lock(), {}


def start_indexing(index_dir, folders: list[str], engine: str) -> IndexingJob:
    lock, jobs = _indexing_jobs()
    key = str(Path(index_dir).resolve())
    with lock:
        if key in jobs and jobs[key].running:
            raise UserError("this index is being updated already (from this UI): wait for it to finish")
        jobs[key] = IndexingJob(index_dir, folders, engine).start()
        return jobs[key]


def indexing_job(index_dir) -> IndexingJob | None:
    """The running or finished (not yet reported) indexing job of ``index_dir``."""
    lock, jobs = _indexing_jobs()
    with lock:
        return jobs.get(str(Path(index_dir).resolve()))


def finish_indexing(index_dir) -> Outcome | None:
    """The outcome of the finished job of ``index_dir``, forgotten once read; None while one runs."""
    lock, jobs = _indexing_jobs()
    key = str(Path(index_dir).resolve())
    with lock:
        job = jobs.get(key)
        if job is None or job.running:
            return None
        del jobs[key]
        return job.outcome


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
