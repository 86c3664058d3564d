"""Opening an index for an update, or creating it: what ``vgg-retrieval index`` does before indexing.

``open_or_create`` reconciles the model options (or an exported ``--model`` folder) with an existing
index's model, or builds the model of a new index; ``ray_settings`` and ``resolve_index_type`` check
the Ray and index-type options. No click here: the CLI and tests call these directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from indexer.storage.creating import MIN_CALIBRATION_IMAGES
from indexer.update.calibration import calibration_images
from indexer.update.ray_embedding import RayOptions, import_ray
from indexer.update.scan import printable
from indexer.update.updater import check_root
from retrieval.engines import DEFAULT_ENGINE, INT8_PAYS, cpu_runs_bf16, int8_gain, int8_pays
from retrieval.engines.export import read_sidecar
from retrieval.errors import UserError
from retrieval.spec import DEFAULT_INPUT_SIZE, DEFAULT_SCALES

from . import vectors
from .index import Index


def build_model(
    arch=None,
    weights=None,
    pooling=None,
    input_size=None,
    trim_borders=None,
    class_names=None,
    input_policy=None,
    scales=None,
):
    """(spec, torch net) of the descriptor model; unset options take the defaults. ``class_names``:
    a file naming the classes of a torchvision classifier the weights carry. ``input_policy``:
    square or buckets; ``scales``: e.g. (1.0, 0.7071) for multi-scale descriptors."""
    from retrieval.nets.builder import build  # lazy: keeps the command line's start light

    spec, net = build(
        arch or "vgg16",
        weights,
        pooling,
        input_size or DEFAULT_INPUT_SIZE,
        class_names_file=class_names,
        input_policy=input_policy,
        scales=tuple(scales or DEFAULT_SCALES),
    )
    if trim_borders is not None:
        spec = spec.replace(trim_borders=trim_borders)
    return spec, net


def ray_settings(engine: str, address=None, actors=None, model_engine=None, threads=None):
    """RayOptions for ``engine == "ray"`` (None otherwise); Ray settings without it are a mistake."""
    if engine != "ray":
        given = [
            n
            for n, v in (
                ("--ray-address", address),
                ("--ray-actors", actors),
                ("--ray-model-engine", model_engine),
            )
            if v is not None
        ]
        if given:
            raise UserError(f"{', '.join(given)} only apply with --engine ray")
        return None

    import_ray()  # one line saying how to install it, before anything is built
    return RayOptions(
        address=address,
        actors=actors,
        model_engine=model_engine or "openvino",
        cpus_per_actor=float(threads or 1),
    ).validated()


def resolve_index_type(index_type: str, index_dir, db_url=None) -> str:
    """The parsed ``index_type``; UserError when an existing index was made with another one."""

    index_type = vectors.parse_type(index_type, 512)
    if Index.exists(index_dir, db_url):
        with Index.open(index_dir, db_url=db_url) as idx:
            have = idx.vectors_info()["index_type"]
        if have != index_type:
            raise UserError(
                f"--index-type {index_type}: the index at {index_dir} was created "
                f"with {have}; the type is chosen when an index is created"
            )
    return index_type


def _exported_spec(model_dir: Path):

    if not (Path(model_dir) / "model.json").is_file():
        raise UserError(f"no exported model in {model_dir} (model.json missing)")
    return read_sidecar(model_dir)[0]


def _existing_model(index_dir, db_url, model_dir, model: dict):
    """The torch net to open an existing index with (None: the index's own), after checking that
    the asked model (``model_dir`` or the ``model`` options) is the index's."""
    if model_dir is None and all(v is None for v in model.values()):
        return None
    with Index.open(index_dir, db_url=db_url) as idx:
        if model_dir is not None:
            idx.require_model(_exported_spec(model_dir))
            return None
        have = idx.spec
        spec, net = build_model(
            model.get("arch") or have.arch,
            model.get("weights") or have.weights,
            model.get("pooling") or have.pooling,
            model.get("input_size") or have.input_size,
            input_policy=model.get("input_policy") or have.input_policy,
            scales=model.get("scales") or have.scales,
        )
        trim = model.get("trim_borders")  # the input policy stays the index's unless asked for
        idx.require_model(spec.replace(trim_borders=have.trim_borders if trim is None else trim))
        return net


def default_precision(engine: str, ray=None) -> str:
    """INT8 where OpenVINO runs the model and INT8 pays there (Ray actors: always; here: where this
    CPU runs INT8 convolutions ``INT8_PAYS`` times as fast as FP32, ``int8_gain``), else FP32: ONNX
    Runtime's and TensorRT's INT8 lose more (docs/model-pipeline.md), torch runs no quantized model."""
    runs = ray.model_engine if ray is not None else engine
    if runs != "openvino":
        return "fp32"
    return "int8" if ray is not None or int8_pays() else "fp32"


def _check_bf16(precision, engine: str, ray) -> None:
    """bf16 is OpenVINO on a CPU that runs it; anywhere else it would be FP32 under another name."""
    if precision != "bf16":
        return

    runs = ray.model_engine if ray is not None else engine
    if runs != "openvino":
        raise UserError(f"--precision bf16 is OpenVINO's: it does not apply with --engine {runs}")
    if not cpu_runs_bf16():
        raise UserError(
            "--precision bf16 needs a CPU with AMX or AVX512-BF16 (this one has neither): use int8 or fp32"
        )


def _check_precision(idx: Index, precision) -> None:
    if precision is not None and precision != idx.precision:
        raise UserError(
            f"--precision {precision}: the index at {idx.directory} was made with a {idx.precision} "
            f"model; the precision is chosen when an index is created (an index is never converted)"
        )


@dataclass(frozen=True)
class ModelChoice:
    """The model options of ``index``: what a new index is made with; an existing index must match
    (None: the index's own, or the default for a new one). ``model_dir``: an exported model folder
    instead of the options; ``class_names``: a file naming the weights' classifier classes."""

    arch: str | None = None
    weights: str | None = None
    pooling: str | None = None
    input_size: int | None = None
    trim_borders: bool | None = None
    input_policy: str | None = None
    scales: Sequence[float] | None = None
    model_dir: str | Path | None = None
    class_names: str | Path | None = None
    precision: str | None = None  # of a new index's model; None: INT8 where OpenVINO runs it

    def net_options(self) -> dict:
        return {
            "arch": self.arch,
            "weights": self.weights,
            "pooling": self.pooling,
            "input_size": self.input_size,
            "trim_borders": self.trim_borders,
            "input_policy": self.input_policy,
            "scales": self.scales,
        }


@dataclass(frozen=True)
class EngineChoice:
    """How the index's model runs (``Index.open``'s options): engine name, batch size, threads, Ray
    settings (``ray_settings``) and more options of the engine."""

    engine: str | None = None
    batch_size: int = 8
    threads: int | None = None
    ray: object = None
    engine_options: dict | None = None

    def open_options(self) -> dict:

        return {
            "engine": self.engine or DEFAULT_ENGINE,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "ray": self.ray,
            "engine_options": self.engine_options,
        }


def open_or_create(
    index_dir,
    folders: Sequence = (),
    model: ModelChoice = ModelChoice(),
    run: EngineChoice = EngineChoice(),
    *,
    db_url=None,
    index_type: str = "auto",
    calibration_progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], object] | None = None,
) -> Index:
    """The index at ``index_dir`` ready for an update: opened (``model`` must describe its model) or
    created for ``folders`` with that model. A new index's INT8 model is calibrated on one in 8 of the
    ``folders``' photos, 16 to 128 (``indexer.update.calibration.calibration_count``), reporting
    ``calibration_progress(done, total)``; ``log`` hears ``created index ...``."""

    options = run.open_options()
    engine, model_dir, precision = options["engine"], model.model_dir, model.precision
    net_options = model.net_options()
    if Index.exists(index_dir, db_url):
        if model.class_names is not None:
            raise UserError(
                f"--class-names applies when an index is made; {index_dir} keeps its model's classes"
            )
        net = _existing_model(index_dir, db_url, model_dir, net_options)
        idx = Index.open(index_dir, db_url=db_url, net=net, **options)
        try:
            _check_precision(idx, precision)
        except UserError:
            idx.close()
            raise
        return idx
    if not folders:
        raise UserError(f"no index at {index_dir} yet: name the FOLDER(s) to index")

    for f in map(Path, folders):  # before the (slow) model build
        if not f.is_dir():
            raise UserError(f"{'not a folder' if f.exists() else 'folder not found'}: {printable(str(f))}")
    Index.check_can_create(index_dir, db_url)
    for f in folders:  # before the index folder is made: no empty index left behind
        check_root(f, index_dir)
    chosen = precision  # None: the default's choice, said when it is FP32
    if model_dir is not None:
        if any(v is not None for v in net_options.values()):
            raise UserError(
                "--model and --arch/--weights/--pooling/--size/--trim-borders/--input-policy/--scales "
                "exclude each other"
            )
        spec, net = _exported_spec(model_dir), None
        precision = precision or "fp32"  # the folder as it is (an INT8 folder stays INT8)
    else:
        spec, net = build_model(**net_options, class_names=model.class_names)
        precision = precision or default_precision(engine, run.ray)
    _check_bf16(precision, engine, run.ray)

    found: list = []

    def calibration():
        found[:] = calibration_images(folders, size=spec.input_size)
        return found

    idx = Index.create(
        index_dir,
        spec,
        net,
        db_url=db_url,
        model_dir=model_dir,
        index_type=index_type,
        precision=precision,
        progress=calibration_progress,
        calibration=calibration,
        **options,
    )
    if log:
        if precision == "int8" and idx.precision == "fp32":
            log(
                f"too few pictures to calibrate an INT8 model on ({len(found)}, at least {MIN_CALIBRATION_IMAGES} "
                f"needed): the new index starts in FP32"
            )
        log(f"created index {index_dir} with {spec.describe()}, {idx.precision.upper()}")
        if (
            chosen is None
            and model_dir is None
            and precision == "fp32"
            and (engine, run.ray) == ("openvino", None)
        ):
            log(
                f"FP32, not INT8: this CPU runs INT8 convolutions {int8_gain():.2f}x as fast as FP32 "
                f"({INT8_PAYS}x or more pays for quantizing); --precision int8 makes one anyway"
            )
    return idx
