"""Label-free recovery of a pruned model: closed-form layer refit and descriptor distillation on real
unlabelled photos (tiny nets, seconds)."""

import json

import numpy as np
import pytest
import torch
from conftest import DATA, tiny_net

from indexer.student import index_targets
from retrieval.compress.distill import DistillConfig, descriptor_cosine, distill, save_student
from retrieval.compress.distill_data import photo_paths
from retrieval.compress.prune import conv_widths, prune_model
from retrieval.errors import UserError

VACATION = DATA / "photos" / "samples" / "vacation"
HYMENOPTERA = DATA / "photos" / "hymenoptera" / "val"

pytestmark = pytest.mark.skipif(not VACATION.is_dir(), reason="shared photos not available")


def _teacher_student(flops=0.5, keep_last=True):
    spec, teacher = tiny_net(())
    spec = spec.replace(head="", input_size=48)
    teacher.head = None
    student, pspec, kept = prune_model(teacher, spec, flops=flops, keep_last=keep_last, round_to=1)
    return spec, teacher, pspec, student, kept


def test_photo_paths_take_folders_without_class_folders(tmp_path):
    paths = photo_paths([VACATION])
    assert len(paths) > 100 and all(p.startswith(str(VACATION)) for p in paths)
    assert len(photo_paths([VACATION, HYMENOPTERA], limit=20)) == 20
    with pytest.raises(UserError, match="not found"):
        photo_paths([tmp_path / "missing"])
    with pytest.raises(UserError, match="no images"):
        photo_paths([tmp_path])


def test_reconstruction_and_distillation_lower_the_descriptor_loss(tmp_path):
    spec, teacher, pspec, student, kept = _teacher_student()
    train = photo_paths([VACATION], limit=24, seed=1)
    held = photo_paths([HYMENOPTERA], limit=16, seed=2)
    before = 1 - descriptor_cosine(student, held, 48, teacher=teacher).mean()
    cfg = DistillConfig(size=48, epochs=0, reconstruct_images=24, reconstruct_size=48, batch_size=8)
    rep = distill(student, teacher, train, cfg, spec=spec, kept=kept)
    assert len(rep["reconstruct_residuals"]) == 8 and max(rep["reconstruct_residuals"]) < 1.0
    refit = 1 - descriptor_cosine(student, held, 48, teacher=teacher).mean()
    assert refit < before * 0.7, (before, refit)

    calls = []
    cfg = DistillConfig(
        size=48, epochs=3, reconstruct_images=0, batch_size=8, lr=1e-3, cache_dir=str(tmp_path / "c")
    )
    rep = distill(student, teacher, train, cfg, spec=spec, kept=kept, progress=lambda *a: calls.append(a))
    losses = [e["loss"] for e in rep["epochs"]]
    assert losses[-1] < losses[0], losses
    assert calls[-1][0] == "distill" and calls[-1][1] == calls[-1][2]
    assert list((tmp_path / "c").glob("distill-teacher-*.pt"))  # teacher outputs of the views were kept
    after = 1 - descriptor_cosine(student, held, 48, teacher=teacher).mean()
    assert after < refit, (refit, after)


def test_a_buckets_model_is_refitted_and_distilled_on_its_own_bucket_shapes(tmp_path):
    """The student of a buckets model learns from the inputs its index will give it: every photo in
    its bucket (not a padded square), for the layer refit and for the plain views of gradient epochs."""
    from retrieval.preprocess import load_and_prepare

    spec, teacher, pspec, student, kept = _teacher_student()
    spec = spec.replace(input_policy="buckets", input_size=64)
    buckets = set(spec.input_shapes())
    train = photo_paths([VACATION], limit=24, seed=5)
    held = photo_paths([HYMENOPTERA], limit=16, seed=6)
    seen = []
    hook = student.features[0].register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[2:])))
    before = 1 - descriptor_cosine(student, held, spec.input_geometry, teacher=teacher).mean()
    assert len(set(seen)) > 1 and set(seen) <= buckets, seen  # the held-out photos as the index sees them
    seen.clear()
    distill(student, teacher, train, DistillConfig(epochs=0, reconstruct_images=24), spec=spec, kept=kept)
    refit_shapes = set(seen)
    assert len(refit_shapes) > 1 and refit_shapes <= buckets, refit_shapes
    refit = 1 - descriptor_cosine(student, held, spec.input_geometry, teacher=teacher).mean()
    assert refit < before * 0.7, (before, refit)
    seen.clear()
    distill(
        student,
        teacher,
        train,
        DistillConfig(size=48, epochs=1, reconstruct_images=0, batch_size=8, lr=1e-4),
        spec=spec,
        kept=kept,
    )
    assert (48, 48) in seen and len(set(seen) & buckets) > 1, set(seen)  # augmented squares + plain buckets
    hook.remove()
    # the cosine is the one of the descriptors an index would store: each photo in its own bucket
    x = [load_and_prepare(p, spec.input_geometry) for p in held[:4]]
    with torch.no_grad():
        direct = [
            float(
                (
                    student(torch.from_numpy(q.array[None]), torch.tensor([q.valid]))
                    * teacher(torch.from_numpy(q.array[None]), torch.tensor([q.valid]))
                ).sum()
            )
            for q in x
        ]
    got = descriptor_cosine(student, held[:4], spec.input_geometry, teacher=teacher, trim=False)
    np.testing.assert_allclose(got, direct, atol=1e-5)


def test_pruned_last_conv_distils_to_the_kept_teacher_channels(tmp_path):
    spec, teacher, pspec, student, kept = _teacher_student(flops=0.6, keep_last=False)
    assert conv_widths(student)[-1] < 32 and pspec.descriptor_dim == conv_widths(student)[-1]
    paths = photo_paths([VACATION], limit=16, seed=3)
    before = descriptor_cosine(student, paths, 48, teacher=teacher, kept=kept).mean()
    distill(
        student,
        teacher,
        paths,
        DistillConfig(size=48, epochs=1, reconstruct_images=16, reconstruct_size=48, batch_size=8, lr=1e-3),
        kept=kept,
    )
    assert descriptor_cosine(student, paths, 48, teacher=teacher, kept=kept).mean() > before
    # the distilled student saves, reloads and gives the same descriptors
    from retrieval.nets.builder import build

    ck = tmp_path / "s.pt"
    save_student(ck, pspec, student)
    spec2, net2 = build("vgg11", str(ck), input_size=48)  # the checkpoint's own pooling
    assert spec2.widths == conv_widths(student) and spec2.descriptor_dim == pspec.descriptor_dim
    assert spec2.model_id != spec.model_id
    x = torch.randint(0, 256, (2, 48, 48, 3), dtype=torch.uint8)
    s = torch.tensor([[48, 48], [40, 48]])
    with torch.no_grad():
        torch.testing.assert_close(net2(x, s), student(x, s))


def test_index_descriptors_replace_the_teacher_on_plain_views(tmp_path):
    """An index holds the teacher's descriptors: distilling from them alone needs no teacher run."""
    from indexer.index import Index

    spec, teacher, pspec, student, kept = _teacher_student()
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photo_paths([VACATION], limit=12, seed=4):
        (folder / p.rsplit("/", 1)[1]).write_bytes(open(p, "rb").read())
    with Index.create(tmp_path / "idx", spec, net=teacher) as index:
        index.update([folder], progress=False, workers=0)
    paths, vectors, ispec = index_targets(tmp_path / "idx")
    assert len(paths) == 12 and vectors.shape == (12, 32) and ispec.model_id == spec.model_id
    before = 1 - descriptor_cosine(student, paths, 48, teacher_vectors=vectors, trim=spec.trim_borders).mean()
    cfg = DistillConfig(size=48, epochs=4, augmented_views=0, reconstruct_images=0, batch_size=6, lr=2e-3)
    rep = distill(student, None, paths, cfg, spec=spec, teacher_vectors=vectors, kept=kept)
    after = 1 - descriptor_cosine(student, paths, 48, teacher_vectors=vectors, trim=spec.trim_borders).mean()
    assert after < before and rep["epochs"][-1]["loss"] < rep["epochs"][0]["loss"]
    with pytest.raises(ValueError, match="teacher"):
        distill(student, None, paths, DistillConfig(size=48, epochs=1), teacher_vectors=vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # the optimize API: prune the index's model, distil on its photos, a normal checkpoint + report
    from indexer.student import optimize_index
    from retrieval.nets.builder import build

    out = tmp_path / "opt" / "student.pt"
    rep = optimize_index(
        tmp_path / "idx",
        out,
        flops=0.5,
        teacher=teacher,
        round_to=1,
        cfg=DistillConfig(size=48, epochs=1, augmented_views=0, reconstruct_images=0, batch_size=6),
    )
    assert rep["student"]["gflops"] < 0.6 * rep["teacher"]["gflops"] and rep["photos"] == 12
    assert 0 < rep["cosine_to_teacher"]["mean"] <= 1 and (tmp_path / "opt" / "student.pt.json").exists()
    spec3, net3 = build("vgg11", str(out), "gap", 48)
    assert spec3.widths == tuple(rep["widths"]) and spec3.model_id != spec.model_id


def test_optimize_command_prunes_an_index_model_on_its_photos(tmp_path, tiny_model, photos, capsys):
    """``vgg-retrieval optimize``: the teacher from the index's own spec, the refit on its photos."""
    from indexer.cli import main
    from indexer.index import Index

    spec, net, model_dir = tiny_model
    with Index.create(tmp_path / "idx", spec, model_dir=model_dir) as index:
        index.update([photos], progress=False, workers=0)
    out = tmp_path / "student.pt"
    assert main(["optimize", "--index", str(tmp_path / "idx"), "--out", str(out), "--photos", "6", "-q"]) == 0
    made = json.loads((tmp_path / "student.pt.json").read_text())
    assert made["photos"] == 6 and made["student"]["gflops"] < 0.6 * made["teacher"]["gflops"]
    assert f"wrote {out}" in capsys.readouterr().out
    assert main(["optimize", "--index", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no index at")


def test_cached_teacher_descriptors_are_keyed_by_pooling_and_input_policy():
    """The on-disk teacher cache must not hand a GAP teacher's descriptors to a GeM run of the same
    weights, nor squares' to a buckets model's."""
    import copy

    from retrieval.compress.distill import _teacher_id

    spec, teacher, *_ = _teacher_student()
    gem = copy.deepcopy(teacher)
    gem.pooling = "gem"
    ids = {
        _teacher_id(teacher, spec),
        _teacher_id(gem, spec),
        _teacher_id(teacher, spec.replace(input_policy="buckets")),
        _teacher_id(teacher, spec.replace(input_size=64)),
    }
    assert len(ids) == 4
    assert _teacher_id(copy.deepcopy(teacher), spec) == _teacher_id(
        teacher, spec
    )  # stable for the same teacher
