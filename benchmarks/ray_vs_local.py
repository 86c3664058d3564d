"""Indexing throughput of the local engine vs ``--engine ray`` on the same folder, in one run.

    python benchmarks/ray_vs_local.py [--folder DIR] [--images 48] [--ray-actors N] [--threads N]

Both build a new index of the same photos (a copy of the first ``--images`` files of ``--folder``,
default the shared vacation photos) with the same model: the shared VGG16 trunk at 224 px, exported
once and run by OpenVINO FP32. The local engine decodes in worker processes and embeds in this
process (``--workers`` default); Ray runs on a local cluster of this machine's cores, decoding in
tasks and embedding in an actor pool, and the driver writes the index. The Ray row's time includes
starting the actors and loading the model into them, not starting Ray itself (printed apart): it is
paid once per ``vgg-retrieval index`` run. Both indexes are compared (same paths, cosine >= 0.9999).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=DATA / "photos" / "samples" / "vacation")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ray-actors", type=int, default=None, help="[default: the indexer's default]")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Ray: inference threads (and reserved CPUs) per actor [default: 1]",
    )
    args = ap.parse_args()

    import ray

    from indexer import Index
    from indexer.storage.tables import ImageRow
    from indexer.update.ray_embedding import RayOptions, code_modules, default_actors
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    files = sorted(p for p in args.folder.iterdir() if p.is_file())[: args.images]
    with tempfile.TemporaryDirectory(prefix="ray-vs-local-") as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        for f in files:
            shutil.copy2(f, photos / f.name)
        spec, net = build("vgg16", str(WEIGHTS))
        model_dir = export_model(spec, net, tmp / "model")

        def run(name, **options):
            with Index.create(
                tmp / name, spec, model_dir=model_dir, batch_size=args.batch_size, **options
            ) as idx:
                t = time.perf_counter()
                report = idx.update([photos], progress=False)
                seconds = time.perf_counter() - t
                with idx.store.session() as s:
                    vecs = {r.path: idx.vector(r.id) for r in s.query(ImageRow)}
            return report, seconds, vecs

        local, local_s, local_v = run("local")

        t = time.perf_counter()
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={"py_modules": code_modules()},
        )
        ray_start_s = time.perf_counter() - t
        opts = RayOptions(actors=args.ray_actors, cpus_per_actor=float(args.threads or 1))
        actors = opts.actors or default_actors(ray, opts)
        try:
            distributed, ray_s, ray_v = run("ray", ray=opts, threads=args.threads)
        finally:
            ray.shutdown()

    assert set(local_v) == set(ray_v) and local.embedded == distributed.embedded == len(files)
    worst = min(float(np.dot(local_v[p], ray_v[p])) for p in local_v)
    workers = min(4, max(1, (os.cpu_count() or 2) // 2))
    lrate, rrate = local.embedded / local_s, distributed.embedded / ray_s
    print(
        f"{len(files)} photos from {args.folder}, VGG16 224 px, OpenVINO FP32, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs; worst cosine local vs Ray {worst:.6f}; Ray startup {ray_start_s:.1f} s "
        f"(not in the table)\n"
    )
    print("| engine | setup | images | seconds | img/s | vs local |")
    print("|---|---|---:|---:|---:|---:|")
    print(
        f"| local | {workers} decode process(es), inference in-process, all cores | {local.embedded} | "
        f"{local_s:.1f} | {lrate:.2f} | 1.00x |"
    )
    print(
        f"| ray | local Ray, {actors} actor(s) x {args.threads or 1} thread(s), decode tasks | "
        f"{distributed.embedded} | {ray_s:.1f} | {rrate:.2f} | {rrate / lrate:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
