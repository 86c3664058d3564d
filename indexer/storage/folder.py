"""The index folder: making and opening one, the write lock, and the model it holds (its names:
``layout``)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from indexer import vectors
from indexer.faults import crash_point
from retrieval.engines.export import SIDECAR, export_model, read_sidecar
from retrieval.errors import ModelMismatchError, UserError
from retrieval.spec import ModelSpec

from . import creating
from .creating import being_created, clear, leftovers, quantize_in_place, unfinished
from .database_link import new_index_id, public_url, read_link, write_link
from .layout import DB_FILE, FORMAT, FORMAT_VERSION, LOCK_FILE, MODEL_DIR
from .store import Store


def db_url(directory: Path, url: str | None) -> str:
    """The metadata database: ``url``, else the one ``DIR/database.json`` remembers, else DIR/index.sqlite."""
    if url:
        return url
    link = read_link(directory)
    return link["url"] if link else f"sqlite:///{directory / DB_FILE}"


def exists(directory, url: str | None = None) -> bool:
    directory = Path(directory)
    if unfinished(directory):
        return False  # a creation that never finished: made again from the start
    if read_link(directory) is not None:
        return True  # the folder names its database (unreachable or not: open() says which)
    if url:
        store = Store(url, create=False)  # UserError when unreachable
        try:
            if store.meta("format") != FORMAT:
                return False
            name = store.meta("vectors_file")
            if name and (directory / name).is_file() and not (directory / DB_FILE).exists():
                return True  # this folder's index, made before folders remembered their database
            made_for = store.meta("directory")
            raise UserError(
                f"the database {store.shown} already holds another index"
                f"{f' (made for {made_for})' if made_for else ''}: give each index its own "
                f"database, or its own schema with ?schema=NAME in the URL"
            )
        finally:
            store.close()
    return (directory / DB_FILE).is_file()


def check_can_create(directory, url: str | None = None) -> None:
    """UserError unless a new index may be made at ``directory`` (a new or empty folder)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"index path exists and is not a folder: {directory}")
    if exists(directory, url):
        raise UserError(f"an index already exists at {directory}")
    if directory.is_dir() and any(directory.iterdir()):
        holder = being_created(directory)
        if holder:
            raise UserError(
                f"the index {directory} is being created by another process (pid {holder}); "
                f"wait for it to finish"
            )
        if leftovers(directory) is None:
            raise UserError(
                f"{directory} is not empty and is not an index: choose a new or empty --index folder"
            )


def _clear_unfinished(directory: Path) -> None:
    """Start over where a creation was interrupted (``check_can_create`` allowed only its files)."""
    if directory.is_dir():
        clear(leftovers(directory) or [])


def create(
    directory: Path,
    spec: ModelSpec,
    net=None,
    url: str | None = None,
    model_dir=None,
    index_type: str = "auto",
    index_options: dict | None = None,
    precision: str = "fp32",
    calibration: Callable[[], list] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Store, object]:
    """Make a new, empty index folder (see ``Index.create``; the steps in ``indexer.storage.creating``):
    (its store, the net if one was built). ``precision`` "int8": the model is quantized with NNCF,
    calibrated on the images ``calibration()`` gives; ``progress(done, total)`` hears that."""
    check_can_create(directory, url)
    if precision not in creating.PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of {', '.join(creating.PRECISIONS)}")
    vector_config = vectors.make_config(index_type, spec.descriptor_dim, **(index_options or {}))
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise UserError(f"index folder is not writable: {directory}")
    _clear_unfinished(directory)
    mark = creating.mark(directory)  # locked while this process creates: another creator is refused
    try:
        store, net = _create_marked(
            directory, spec, net, url, model_dir, vector_config, precision, calibration, progress
        )
    except BaseException:
        mark.release(done=False)  # still marked: the next run starts over
        raise
    mark.release(done=True)
    if url:  # after the commit: a folder never names a database that does not hold its index
        write_link(directory, url, store.meta("index_id"))
    return store, net


def _create_marked(directory, spec, net, url, model_dir, vector_config, precision, calibration, progress):
    """The steps of ``create`` inside the marked, locked folder: model (INT8: quantized), then the
    database with the index's meta. Returns (the store, the net if one was built)."""
    store = Store(url) if url else None
    try:
        net = _make_model(directory / MODEL_DIR, spec, net, model_dir)
        crash_point("model_exported")
        if precision == "int8":
            images = calibration() if calibration else []
            if len(images) >= creating.MIN_CALIBRATION_IMAGES:  # else FP32: the sidecar says so
                creating.quantize_in_place(directory / MODEL_DIR, images, progress)
        crash_point("model_ready")
        stored = read_sidecar(directory / MODEL_DIR)[1].get("precision", "fp32")  # a given INT8 --model too
        precision = "bf16" if precision == "bf16" and stored == "fp32" else stored
        store = store or Store(db_url(directory, url))
        crash_point("database_opened")
        _write_meta(store, directory, spec, vector_config, precision)
    except BaseException:
        if store is not None:
            store.close()
        raise
    return store, net


def _make_model(dst: Path, spec: ModelSpec, net, model_dir):
    """The model folder of a new index: a copy of ``model_dir``, else exported from ``net`` (else
    from the weights the spec names). Returns the net when one was built."""
    if model_dir is not None:
        copy_model(model_dir, dst, spec)
        return net
    if net is None:
        from retrieval.nets.builder import load_model  # lazy: keeps the command line's start light

        net = load_model(spec)
    export_model(spec, net, dst)
    return net


def _write_meta(store: Store, directory: Path, spec: ModelSpec, vector_config, precision: str) -> None:
    """The new index's meta and its empty vectors file, in one transaction."""
    with store.session.begin() as s:
        Store.set_meta(s, "format", FORMAT)
        Store.set_meta(s, "index_id", new_index_id())
        Store.set_meta(s, "directory", str(directory.resolve()))
        Store.set_meta(s, "format_version", FORMAT_VERSION)
        Store.set_meta(s, "spec", spec.to_dict())
        Store.set_meta(s, "model_id", spec.model_id)
        Store.set_meta(s, "precision", precision)
        Store.set_meta(s, "generation", 0)
        name, digest = vectors.save(vectors.empty_index(vector_config, spec.descriptor_dim), directory, 0)
        Store.set_meta(s, "vectors_index", vector_config.to_meta())
        Store.set_meta(s, "vectors_file", name)
        Store.set_meta(s, "vectors_sha256", digest)
        Store.set_meta(s, "count", 0)
        Store.set_meta(s, "created_at", time.time())
        Store.set_meta(s, "updated_at", time.time())


def open_store(directory: Path, url: str | None = None) -> tuple[Store, ModelSpec]:
    """The store of the index at ``directory`` and the spec of its model (UserError when it is none)."""
    if not directory.is_dir() or not exists(directory, url):
        raise UserError(
            f"no index at {directory} (create one with: vgg-retrieval index FOLDER --index {directory})"
        )
    link = read_link(directory)
    store = Store(db_url(directory, url), create=False)  # UserError when unreachable
    try:
        fmt = store.meta("format")
        spec_dict = store.meta("spec")
        index_id = store.meta("index_id")
    except Exception as e:
        store.close()
        raise UserError(f"cannot read the index database of {directory}: {str(e).splitlines()[0]}") from None
    if fmt != FORMAT or not spec_dict:
        store.close()
        if link is not None:
            raise UserError(f"the database {store.shown} named by {directory} holds no vgg-retrieval index")
        raise UserError(f"{directory} is not a vgg-retrieval index")
    if link is not None and link.get("index_id") and link["index_id"] != index_id:
        store.close()
        raise UserError(
            f"the database {store.shown} holds another index than {directory} "
            f"(made for {store.meta('directory') or '?'})"
        )
    if url and (link is None or link.get("url") != public_url(url)):
        try:  # remember it (an index made before folders did, or a database that moved)
            write_link(directory, url, index_id)
        except OSError:
            pass  # a read-only index folder: --db must be given each time
    return store, ModelSpec.from_dict(spec_dict)


def check_writable(directory: Path) -> None:
    """UserError when the index at ``directory`` can be searched but not updated."""
    if not os.access(directory, os.W_OK) or (
        (directory / DB_FILE).exists() and not os.access(directory / DB_FILE, os.W_OK)
    ):
        raise UserError(f"index folder {directory} is read-only: it can be searched, not updated")


_HELD: dict[tuple[str, int], int] = {}  # (index folder, thread) -> depth: the locks this process holds


@contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """Held while updating: one writer per index; a second one is told who holds it. Re-entrant in
    the thread that holds it (dedup apply holds it while the index forgets the moved files)."""
    key = (os.path.realpath(directory), threading.get_ident())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with _flock(Path(directory)):
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]


@contextmanager
def _flock(directory: Path) -> Iterator[None]:
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot lock the index {directory}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise UserError(
                f"index {directory} is being updated by another process (pid {holder}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock; a killed process releases it too


def ensure_exported_model(
    spec: ModelSpec,
    model_dir: Path,
    net=None,
    precision: str = "fp32",
    calibration: Callable[[], list] | None = None,
):
    """Make sure ``model_dir`` holds ``spec``'s export; missing or damaged, it is rebuilt from ``net``
    (else from the weights the spec names) at the index's ``precision`` (INT8: calibrated again on
    the images ``calibration()`` gives). Returns the net when one was needed, else ``net``."""
    ok = (model_dir / SIDECAR).is_file()
    if ok:
        try:
            ok = read_sidecar(model_dir)[0].model_id == spec.model_id
        except Exception:
            ok = False
    if not ok:  # missing or damaged: rebuild it from the weights the spec names
        from retrieval.nets.builder import load_model  # lazy: keeps the command line's start light

        net = net or load_model(spec)
        export_model(spec, net, model_dir)
        if precision == "int8":
            quantize_in_place(model_dir, calibration() if calibration else [])
    return net


def copy_model(src, dst: Path, spec: ModelSpec | None = None) -> ModelSpec:
    """Copy an exported model folder (checked: its sidecar must describe ``spec``)."""
    import shutil

    src = Path(src)
    try:
        stored, _ = read_sidecar(src)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{src} is not an exported model folder ({e})") from None
    if spec is not None and stored.model_id != spec.model_id:
        raise ModelMismatchError(f"model folder {src} holds {stored.describe()}, not {spec.describe()}")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return stored
