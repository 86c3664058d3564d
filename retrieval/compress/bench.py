"""Benchmark model variants: top-1, latency, throughput, size and descriptor agreement.

A variant is ``LABEL=ENGINE:PATH``: ENGINE is a registered engine (``retrieval.engines``): torch
(PATH: a weights file or checkpoint) or one that runs an export, openvino, onnxruntime or tensorrt
(PATH: an exported model folder). The first variant is the reference for the ratios and
for descriptor agreement (mean cosine between the variant's and the reference's descriptors of the
same images; only where the descriptor sizes match).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path

import numpy as np

from retrieval.engines import engine_entry, load_embedder
from retrieval.engines.export import read_sidecar
from retrieval.engines.registry import engine_names
from retrieval.errors import UserError
from retrieval.preprocess import load_and_prepare
from retrieval.training.data import load_split
from retrieval.training.train import load_checkpoint_model

from .quantize import evaluate_embedder


def parse_variant(text: str):
    label, eq, rest = text.partition("=")
    if not eq:
        rest, label = text, text
    engine, colon, path = rest.partition(":")
    names = engine_names()
    if not colon or engine not in names:
        raise UserError(f"variant {text!r}: expected LABEL=ENGINE:PATH with ENGINE {'|'.join(names)}")
    return label, engine, Path(path)


def load_variant(engine: str, path: Path, size: int | None, threads: int | None):

    entry = engine_entry(engine)
    if not entry.needs_export:  # torch: PATH is a weights file or checkpoint
        spec, net = load_checkpoint_model(path, size)
        return load_embedder(engine, spec, net=net, batch_size=8, threads=threads), path.stat().st_size
    spec, sidecar = read_sidecar(path)
    files = [path / name for name in entry.model_files]
    return load_embedder(engine, spec, path, batch_size=8, threads=threads), sum(
        f.stat().st_size for f in files if f.exists()
    )


def run_benchmark(
    variants,
    items,
    size: int | None = None,
    latency_runs: int = 20,
    throughput_batches: int = 6,
    threads: int | None = None,
    log=print,
):

    rows, ref_desc = [], None
    for text in variants:
        label, engine, path = parse_variant(text)
        emb, nbytes = load_variant(engine, path, size, threads)
        s = emb.spec.input_size
        top1, desc = evaluate_embedder(emb, items)
        p = load_and_prepare(items[0][0], emb.spec.input_geometry)
        one_i, one_s = p.array[None], np.array([p.valid], dtype=np.int64)
        emb.embed_batch(one_i, one_s)
        lat = []
        for _ in range(latency_runs):
            t = time.perf_counter()
            emb.embed_batch(one_i, one_s)
            lat.append(time.perf_counter() - t)
        bi, bsz = np.repeat(one_i, 8, 0), np.repeat(one_s, 8, 0)
        emb.embed_batch(bi, bsz)
        t = time.perf_counter()
        for _ in range(throughput_batches):
            emb.embed_batch(bi, bsz)
        thr = 8 * throughput_batches / (time.perf_counter() - t)
        agree = None
        if ref_desc is None:
            ref_desc = desc
        if ref_desc.shape == desc.shape:
            agree = float(np.mean(np.sum(ref_desc * desc, axis=1)))
        row = {
            "variant": label,
            "engine": engine,
            "top1": top1,
            "latency_ms": 1000 * statistics.median(lat),
            "throughput": thr,
            "size_mb": nbytes / 1e6,
            "agreement": agree,
            "input_size": s,
            "descriptor_dim": int(desc.shape[1]),
        }
        rows.append(row)
        log(
            f"  {label}: top1 {top1} latency {row['latency_ms']:.1f} ms, {thr:.1f} img/s, {row['size_mb']:.1f} MB"
        )
        emb.close()
    base = rows[0]
    for r in rows:
        r["latency_ratio"] = r["latency_ms"] / base["latency_ms"]
        r["throughput_ratio"] = r["throughput"] / base["throughput"]
        r["size_ratio"] = r["size_mb"] / base["size_mb"]
    return rows


def to_markdown(rows, n_images: int) -> str:
    def f(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    out = [
        f"Top-1 and agreement on {n_images} validation images; latency: batch 1 median; throughput: batch 8. "
        f"Ratios vs the first row.",
        "",
        "| variant | engine | top-1 | latency ms (x) | img/s (x) | size MB (x) | descriptor cos vs row 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['variant']} | {r['engine']} | {f(r['top1'] and 100 * r['top1'], '.2f')} | "
            f"{r['latency_ms']:.1f} ({r['latency_ratio']:.2f}) | {r['throughput']:.1f} ({r['throughput_ratio']:.2f}) | "
            f"{r['size_mb']:.1f} ({r['size_ratio']:.2f}) | {f(r['agreement'], '.4f')} |"
        )
    return "\n".join(out) + "\n"


def write_report(rows, out_prefix, n_images: int) -> tuple[Path, Path]:
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    md, js = out_prefix.with_suffix(".md"), out_prefix.with_suffix(".json")
    md.write_text(to_markdown(rows, n_images))
    js.write_text(json.dumps({"images": n_images, "rows": rows}, indent=2))
    return md, js


def benchmark_variants(
    variants,
    data,
    out,
    *,
    limit: int | None = 300,
    threads=None,
    size=None,
    latency_runs: int = 20,
    throughput_batches: int = 6,
    log=print,
):
    """Compare model variants (LABEL=ENGINE:PATH, the first is the reference) on ``data``'s val
    split; writes OUT.md and OUT.json and returns their paths."""

    items = list(load_split(data, 0.2, 0).val)
    random.Random(0).shuffle(items)
    items = items[:limit] if limit else items
    rows = run_benchmark(
        list(variants),
        items,
        latency_runs=latency_runs,
        throughput_batches=throughput_batches,
        size=size,
        threads=threads,
        log=log,
    )
    return write_report(rows, out, len(items))
