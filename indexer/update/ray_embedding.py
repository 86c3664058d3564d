"""Distributed decoding and embedding with Ray Data (``vgg-retrieval index ... --engine ray``).

More: docs/design-notes.md (``indexer.update.ray_embedding``)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from indexer.reports import Capture
from retrieval.engines import load_embedder, ray_engine_names
from retrieval.engines.export import IR_FILE, ONNX_FILE, SIDECAR
from retrieval.errors import UserError
from retrieval.spec import InputBuckets, ModelSpec

from .decode import Decoded, decode_items

INSTALL_HINT = 'pip install "vgg-retrieval[ray]"'
MODEL_ENGINES = ray_engine_names()  # registered with ray=True (retrieval.engines): openvino, onnxruntime
FILES_PER_BLOCK = 16  # files per Ray Data block: small blocks keep decoding streaming and spread out


@dataclass
class RayOptions:
    """Where and how to run: ``address`` None starts a private local Ray (all local cores) unless one
    is already initialised in this process; "auto" joins the cluster started with ``ray start``
    on this machine; ``ray://host:10001`` connects through Ray Client. ``actors``: embedding actors
    (default: the cluster's CPUs less about one in eight, kept for decoding). ``model_engine``: the
    inference engine each actor runs. ``cpus_per_actor``: CPUs each actor reserves, also its
    inference threads unless the index was opened with ``threads``."""

    address: str | None = None
    actors: int | None = None
    model_engine: str = "openvino"
    cpus_per_actor: float = 1.0
    preserve_order: bool = True  # rows come back in file order: same ids as the local engine

    def validated(self) -> "RayOptions":
        if self.model_engine not in MODEL_ENGINES:
            raise UserError(
                f"--ray-model-engine must be one of {', '.join(MODEL_ENGINES)} (got {self.model_engine!r})"
            )
        if self.actors is not None and self.actors < 1:
            raise UserError(f"--ray-actors must be at least 1 (got {self.actors})")
        if self.cpus_per_actor <= 0:
            raise UserError(f"CPUs per Ray actor must be positive (got {self.cpus_per_actor})")
        return self


def import_ray():
    """``ray`` with Ray Data, or a one-line UserError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"--engine ray needs Ray Data ({e.name or 'ray'} is not installed): {INSTALL_HINT}"
        ) from None
    return ray


def code_modules() -> list[str]:
    """The folders of this process's own ``indexer`` and ``retrieval`` packages: a caller that starts
    Ray itself passes ``runtime_env={"py_modules": code_modules()}`` to ``ray.init`` (Ray uploads
    directories only at the job level), unless the workers have vgg-retrieval installed."""
    packages = Path(__file__).resolve().parents[2]  # the folder holding indexer/ and retrieval/
    return [str(packages / "indexer"), str(packages / "retrieval")]


def _connect(ray, opts: RayOptions) -> bool:
    """Initialise Ray unless it already is; True when this call started it (and must shut it down)."""
    if ray.is_initialized():
        return False
    kwargs = dict(
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"py_modules": code_modules()},
    )
    try:
        if opts.address:
            ray.init(address=opts.address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as e:
        where = opts.address or "a local Ray"
        raise UserError(
            f"cannot start or reach Ray at {where}: {str(e).strip().splitlines()[0][:200]}"
        ) from None
    return True


def _model_files(model_dir: Path, engine: str) -> dict[str, bytes]:
    """The files of the exported model one engine needs, by name (shipped to the actors)."""

    if engine == "openvino":
        names = [SIDECAR, IR_FILE, Path(IR_FILE).with_suffix(".bin").name]
    else:
        names = [SIDECAR, ONNX_FILE] + [p.name for p in model_dir.glob(ONNX_FILE + "*.data")]
        names += [p.name for p in model_dir.glob("*.onnx.data") if p.name not in names]
    files = {}
    for name in names:
        path = model_dir / name
        if not path.is_file():
            raise UserError(
                f"the index's model folder {model_dir} has no {name} (needed by the {engine} engine)"
            )
        files[name] = path.read_bytes()
    return files


# --- on the workers ------------------------------------------------------------------------------
def _decode_rows(job: dict) -> list[dict]:
    """One scanned file -> its rows (decode_items: several for a container such as a video). Every
    row has the same columns; a problem row carries a zero picture that no actor embeds."""

    size = int(job["input_size"])
    geometry = InputBuckets(size) if job.get("buckets") else size
    rows = []
    for d in decode_items((job["path"], job["root"], geometry, int(job["max_pixels"]))):
        ok = d.problem is None and d.array is not None
        rows.append(
            {
                "path": d.path,
                "root": d.root,
                "size": int(d.size),
                "mtime_ns": int(d.mtime_ns),
                "sha256": d.sha256 or "",
                "width": int(d.width),
                "height": int(d.height),
                "format": d.format or "",
                "problem": "" if ok else (d.problem or "could not be decoded"),
                "vh": int(d.valid[0]) if ok else 0,
                "vw": int(d.valid[1]) if ok else 0,
                "array": d.array if ok else np.zeros((size, size, 3), np.uint8),
                "extra": _extra(d),
            }
        )
    return rows


_BASE_FIELDS = (
    "path",
    "root",
    "size",
    "mtime_ns",
    "sha256",
    "width",
    "height",
    "format",
    "array",
    "valid",
    "problem",
)


_DATACLASS_FIELDS = {"capture": Capture}  # Decoded fields that hold a dataclass, by its class


def _extra(d: Decoded) -> str:
    """Fields a Decoded may carry beyond the base ones (added by other item kinds), as JSON."""
    import dataclasses
    import json

    extra = {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name not in _BASE_FIELDS}
    for k in _DATACLASS_FIELDS:  # sent as their fields, made dataclasses again by _rows_of
        if extra.get(k) is not None:
            extra[k] = dataclasses.asdict(extra[k])
    return json.dumps(extra, default=str) if extra else ""


class _EmbedActor:
    """Holds one embedder (loaded once from the shipped model files) and turns batches of decoded
    rows into rows of metadata + vector; the pixels stay on the worker."""

    def __init__(self, files, spec: dict, engine: str, batch_size: int, threads: int | None):

        if not isinstance(files, dict):  # (ObjectRef,): nested, so the driver keeps it alive for restarts
            import ray

            files = ray.get(files[0])
        self._dir = tempfile.TemporaryDirectory(prefix="vgg-retrieval-model-")
        for name, data in files.items():
            (Path(self._dir.name) / name).write_bytes(data)
        self.spec = ModelSpec.from_dict(spec)
        self.embedder = load_embedder(
            engine, self.spec, self._dir.name, batch_size=batch_size, threads=threads
        )

    def __call__(self, batch: dict) -> dict:
        problems = np.asarray(batch["problem"]).astype(str)
        good = np.flatnonzero(problems == "")
        out = np.zeros((len(problems), self.spec.descriptor_dim), np.float32)
        if len(good):
            images = [np.asarray(batch["array"][i], dtype=np.uint8) for i in good]  # buckets: a few shapes
            sizes = np.stack([np.asarray(batch["vh"])[good], np.asarray(batch["vw"])[good]], axis=1).astype(
                np.int64
            )
            out[good] = self.embedder.embed_batch(images, sizes)
        result = {k: v for k, v in batch.items() if k != "array"}
        result["vector"] = out
        return result


# --- on the driver -------------------------------------------------------------------------------
def default_actors(ray, opts: RayOptions) -> int:
    cpus = int(ray.cluster_resources().get("CPU", 1))
    spare = max(1, cpus // 8)
    return max(1, int((cpus - spare) // opts.cpus_per_actor))


def ray_embedded(
    jobs: list, spec, model_dir: Path, opts: RayOptions, batch_size: int = 8, threads: int | None = None
) -> Iterator[tuple[Decoded, np.ndarray | None]]:
    """(Decoded without pixels, unit vector) for every item of the ``jobs`` (``(path, root,
    input_size, max_pixels)``, as the local path builds them), in job order; problem items come with
    ``vector`` None. The driver does no decoding or inference."""
    if not jobs:
        return
    opts = opts.validated()
    ray = import_ray()
    started = _connect(ray, opts)
    try:
        yield from _stream(ray, jobs, spec, Path(model_dir), opts, batch_size, threads)
    except UserError:
        raise
    except Exception as e:
        if type(e).__module__.split(".")[0] != "ray" and not type(e).__name__.startswith("Ray"):
            raise
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UserError(
            f"Ray indexing failed ({type(e).__name__}: {first}); the index keeps what was saved before"
        ) from None
    finally:
        if started:
            ray.shutdown()


def _stream(ray, jobs, spec, model_dir, opts, batch_size, threads):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run chatter on the console
    ctx.execution_options.preserve_order = opts.preserve_order
    ctx.enable_progress_bars = False  # the caller's tqdm bar counts the rows
    try:
        files = ray.put(_model_files(model_dir, opts.model_engine))
        actors = opts.actors or default_actors(ray, opts)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus and actors * opts.cpus_per_actor > cpus - 1:
            raise UserError(
                f"{actors} Ray actor(s) x {opts.cpus_per_actor:g} CPU(s) leave no CPU for decoding on "
                f"this Ray cluster ({cpus:g} CPUs): use fewer --ray-actors or --threads"
            )
        # s: spec.input_geometry, an int or InputBuckets; sent as plain columns
        items = [
            {
                "path": p,
                "root": r,
                "input_size": int(getattr(s, "size", s)),
                "buckets": not isinstance(s, int),
                "max_pixels": m,
            }
            for p, r, s, m in jobs
        ]
        ds = ray.data.from_items(
            items, override_num_blocks=max(1, min(len(items) // FILES_PER_BLOCK + 1, 20000))
        )
        ds = ds.flat_map(_decode_rows)
        ds = ds.map_batches(
            _EmbedActor,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=opts.cpus_per_actor,
            fn_constructor_kwargs={
                "files": (files,),
                "spec": spec.to_dict(),
                "engine": opts.model_engine,
                "batch_size": batch_size,
                "threads": threads or max(1, int(round(opts.cpus_per_actor))),
            },
        )
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2):
            yield from _rows_of(batch)
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved


def _rows_of(batch: dict) -> Iterator[tuple[Decoded, np.ndarray | None]]:
    import json

    vectors = np.asarray(batch["vector"], dtype=np.float32)
    for i in range(len(vectors)):
        problem = str(batch["problem"][i])
        d = Decoded(
            str(batch["path"][i]),
            str(batch["root"][i]),
            size=int(batch["size"][i]),
            mtime_ns=int(batch["mtime_ns"][i]),
            sha256=str(batch["sha256"][i]),
            width=int(batch["width"][i]),
            height=int(batch["height"][i]),
            format=str(batch["format"][i]),
            valid=(int(batch["vh"][i]), int(batch["vw"][i])),
            problem=problem or None,
        )
        extra = str(batch["extra"][i])
        if extra:
            for k, v in json.loads(extra).items():
                kind = _DATACLASS_FIELDS.get(k)
                setattr(d, k, kind(**v) if kind is not None and v is not None else v)
        yield d, (None if problem else vectors[i].copy())


__all__ = ["RayOptions", "ray_embedded", "import_ray", "code_modules", "INSTALL_HINT", "MODEL_ENGINES"]
