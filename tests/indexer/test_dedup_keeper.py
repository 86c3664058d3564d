"""The keeper of a duplicate group is the original (issue 24): never a copy made from another
member - an enlargement (more pixels, no more detail; turned and captioned too), the member with a
caption banner or frame added around it - nor a toned or framed copy of a greyscale original.

Real photos; the copies are made here, as the generated benchmark set makes them."""

from __future__ import annotations

from pathlib import Path

from conftest import DATA, SAMPLES
from PIL import Image, ImageDraw, ImageOps

from indexer.dedup import find_duplicates
from indexer.dedup.quality import read_quality

PIX = SAMPLES / "pixabay"


def _caption(im: Image.Image, text: str) -> Image.Image:
    im = im.copy()
    d = ImageDraw.Draw(im)
    w, h = im.size
    d.rectangle((w // 20, h - h // 7, w // 2, h - h // 20), fill=(250, 250, 250))
    d.text((w // 18, h - h // 8), text, fill=(0, 0, 0))
    return im


def _banner(im: Image.Image) -> Image.Image:
    w, h = im.size
    out = Image.new("RGB", (w, h + h // 6), (255, 255, 255))
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((w // 10, h + h // 24), "Greetings from the coast", fill=(0, 0, 0))
    return out


def test_the_original_is_kept_over_enlarged_captioned_and_bannered_copies(tmp_path, make_index):
    photo = Image.open(PIX / "dog01.jpg").convert("RGB")  # 960 x 676
    w, h = photo.size
    big = photo.resize((round(w * 1.8), round(h * 1.8)), Image.LANCZOS)  # > 1024 px: read natively
    turned = _caption(
        photo.resize((round(w * 1.4), round(h * 1.4)), Image.LANCZOS).rotate(5, resample=Image.BICUBIC),
        "(c) somebody",
    )
    lib = tmp_path / "lib"
    lib.mkdir()
    photo.save(lib / "original.jpg", quality=95)
    big.save(lib / "enlarged.jpg", quality=92)
    turned.save(lib / "enlarged_turned_captioned.jpg", quality=92)
    _banner(photo).save(lib / "banner.jpg", quality=92)
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    names = [[Path(m.path).name for m in g.files] for g in rep.duplicate_groups]
    assert len(rep.duplicate_groups) == 1, names
    (g,) = rep.duplicate_groups
    assert Path(g.keeper.path).name == "original.jpg", (names, g.keeper_reason)
    members = {Path(m.path).name for m in g.members}
    assert {"banner.jpg", "enlarged.jpg"} <= members, names
    # the turned, captioned enlargement outranks the original by pixels: it keeps nothing either way
    # (a member of the original's group, or - when its copy tests fail - a similar shot)
    assert all(Path(x.keeper.path).name != "enlarged_turned_captioned.jpg" for x in rep.duplicate_groups)
    assert "made from it" in g.keeper_reason or "enlarged from it" in g.keeper_reason


def test_toned_and_framed_copies_of_a_grey_photo_are_not_colour(tmp_path):
    """A sepia copy or a coloured frame around a greyscale photo does not make it the colour
    original; a colour photo, with or without a frame, stays colour."""
    grey = Image.open(PIX / "dog01.jpg").convert("L")
    colour = Image.open(PIX / "dog01.jpg").convert("RGB")
    sepia = ImageOps.colorize(grey, (40, 26, 13), (255, 240, 192))
    framed = ImageOps.expand(ImageOps.expand(grey.convert("RGB"), 8, (245, 245, 235)), 90, (30, 160, 60))
    files = {
        "grey.jpg": grey.convert("RGB"),
        "sepia.jpg": sepia,
        "framed_grey.jpg": framed,
        "colour.jpg": colour,
        "framed_colour.jpg": ImageOps.expand(colour, 90, (30, 160, 60)),
    }
    for name, im in files.items():
        im.save(tmp_path / name, quality=92)
    found = {name: read_quality(str(tmp_path / name)).colour for name in files}
    assert found == {
        "grey.jpg": False,
        "sepia.jpg": False,
        "framed_grey.jpg": False,
        "colour.jpg": True,
        "framed_colour.jpg": True,
    }


def test_the_uncropped_original_is_kept_over_a_less_compressed_crop(tmp_path, make_index):
    """A crop keeping 85% of the picture, saved at a higher JPEG quality: within the keeper order's
    30% pixel tolerance it would win on compression; the uncropped photo shows more of the scene
    around it, so the photo is the original."""
    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    w, h = photo.size
    lib = tmp_path / "lib"
    lib.mkdir()
    photo.save(lib / "photo.jpg", quality=80)
    photo.crop((int(0.04 * w), int(0.05 * h), int(0.96 * w), int(0.97 * h))).save(
        lib / "crop.jpg", quality=98
    )
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    assert [[Path(m.path).name for m in g.files] for g in rep.duplicate_groups] == [["photo.jpg", "crop.jpg"]]


def test_a_turned_copy_with_filled_corners_and_mild_enlargements_are_made_from_the_original(tmp_path):
    """The generated groups whose keeper was a copy (issue 24): a copy enlarged, turned by a few
    degrees (its corners filled black) and captioned is made from the original (``turned_from``),
    and so are a 1.19x and a 1.32x enlargement of sharp photos, which lose a little more than
    MAX_EXTRA on the round trip yet far less than the original does there; never the reverse."""
    from conftest import DATA

    from indexer.dedup import keeper
    from indexer.dedup.verify import Verifier

    root = DATA / "photos" / "hymenoptera" / "val"
    ant, bee = (
        root / "ants" / "800px-Meat_eater_ant_qeen_excavating_hole.jpg",
        root / "bees" / "2478216347_535c8fe6d7.jpg",
    )
    if not ant.is_file() or not bee.is_file():
        import pytest

        pytest.skip(f"hymenoptera is not in {root}")
    made = {}
    a, b = Image.open(ant).convert("RGB"), Image.open(bee).convert("RGB")
    turned = a.resize((round(a.width * 1.45), round(a.height * 1.45)), Image.LANCZOS).rotate(
        5, resample=Image.BICUBIC
    )
    made["turned"] = (ant, _caption(turned, "SAMPLE"))
    made["ant_1.32x"] = (ant, a.resize((round(a.width * 1.32), round(a.height * 1.32)), Image.LANCZOS))
    made["bee_1.19x"] = (bee, b.resize((round(b.width * 1.19), round(b.height * 1.19)), Image.LANCZOS))
    v = Verifier(workers=2)
    for name, (original, copy) in made.items():
        path = tmp_path / f"{name}.jpg"
        copy.save(path, quality=92)
        there, back = v.compare(str(path), str(original)), v.compare(str(original), str(path))
        assert keeper.made_from(v, str(path), str(original), there), name
        assert not keeper.made_from(v, str(original), str(path), back), name
    assert keeper.turned_from(
        v, str(tmp_path / "turned.jpg"), str(ant), v.compare(str(tmp_path / "turned.jpg"), str(ant))
    )


def test_a_copy_failing_against_an_enlarged_copy_still_joins_the_original(tmp_path, make_index):
    """The grouping starts at the enlarged, turned copy (most pixels); a copy turned the other way
    fails against it (each shows corners the other lacks) but is a copy of the original. The
    keeper moves to the original at once (``keeper.rekeep``) and the original's own neighbours are
    offered to it (``groups.group_pairs``'s ``refine``): the turned copy joins, verified against
    the original itself. Before, it was left out (generated set: 39 of 144 missed copies)."""
    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    w, h = photo.size
    lib = tmp_path / "lib"
    lib.mkdir()
    photo.save(lib / "original.jpg", quality=95)
    big = photo.resize((round(w * 1.4), round(h * 1.4)), Image.LANCZOS).rotate(5, resample=Image.BICUBIC)
    big.save(lib / "enlarged_turned.jpg", quality=92)
    photo.rotate(-6, resample=Image.BICUBIC).save(lib / "turned.jpg", quality=90)
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    names = [[Path(m.path).name for m in g.files] for g in rep.duplicate_groups]
    assert len(names) == 1 and names[0][0] == "original.jpg", names
    assert set(names[0][1:]) == {"enlarged_turned.jpg", "turned.jpg"}, names
    (g,) = rep.duplicate_groups
    assert all(m.evidence is not None for m in g.members)  # each verified against the keeper


def test_a_keeper_with_a_member_before_it_gives_way_unless_made_from_it(tmp_path):
    """``keeper.rekeep`` with the keeper order, for a keeper it chose before (``rekept``): a group
    kept by a colour copy whose member (the original) ranks first is kept by the original (the
    colour copy is not made from it: the grouping would have started at the original); an
    enlarged copy ranking before the original it is made from never takes its place."""
    import numpy as np

    from indexer.dedup.decide import PairJudge
    from indexer.dedup.keeper import rekeep
    from indexer.dedup.verify import Verifier

    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    w, h = photo.size
    paths = [str(tmp_path / n) for n in ("original.jpg", "colour.jpg", "enlarged.jpg")]
    photo.save(paths[0], quality=90)
    ImageOps.autocontrast(photo, cutoff=3).save(paths[1], quality=90)
    photo.resize((round(w * 1.8), round(h * 1.8)), Image.LANCZOS).save(paths[2], quality=92)
    judge = PairJudge(paths, 1.0, Verifier(workers=2))
    vectors = np.eye(3, dtype=np.float32)
    rank = np.array([0, 1, 2])
    judge.check(("duplicate",))(1, np.array([0, 2]), np.ones(2))
    judge.check(("duplicate",))(0, np.array([2]), np.ones(1))
    assert rekeep(judge, [(1, [0], [1.0])], vectors, rank, rekept=True)[0][:2] == (0, [1])
    # a group the grouping started (not re-kept) keeps its keeper: the order's own choice
    assert rekeep(judge, [(1, [0], [1.0])], vectors, rank)[0][:2] == (1, [0])
    # the enlarged copy (made from the original) before it in the order: no change of keeper
    assert rekeep(judge, [(0, [2], [1.0])], vectors, np.array([1, 2, 0]), rekept=True)[0][:2] == (0, [2])


def _judge_of(tmp_path, images: dict):
    """A PairJudge over ``images`` (name -> (image, JPEG quality)) saved under ``tmp_path``."""
    from indexer.dedup.decide import PairJudge
    from indexer.dedup.verify import Verifier

    paths = []
    for name, (im, quality) in images.items():
        paths.append(str(tmp_path / name))
        im.save(paths[-1], quality=quality)
    return PairJudge(paths, 1.0, Verifier(workers=2)), paths


def test_a_copy_squashed_across_one_axis_is_not_what_its_original_was_enlarged_from(tmp_path):
    """A soft photo (hymenoptera's ant) and its copy squashed to 0.61 of its width, as the generated
    set makes one: over the two axes together the original has more pixels and loses little
    detail at the copy's resolution, but along its height it has none more, so it is not an
    enlargement of the copy (the generated set kept a mirrored copy over this original)."""
    import numpy as np

    from indexer.dedup import keeper

    ant = Image.open(DATA / "photos" / "hymenoptera" / "val" / "ants" / "2238242353_52c82441df.jpg").convert(
        "RGB"
    )
    w, h = ant.size
    squashed = ant.resize((int(w * 0.61), h), Image.LANCZOS)
    judge, paths = _judge_of(tmp_path, {"ant.jpg": (ant, 95), "ant_squashed.jpg": (squashed, 92)})
    assert judge.check(("duplicate",))(0, np.array([1]), np.ones(1))[0]
    k, m, t = keeper._pair(judge.verifier, paths[0], paths[1], keeper._oriented(judge, 0, 1))
    assert keeper._density(k, m, t) < keeper.DENSER  # fewer pixels over the two axes together...
    assert keeper._densest_axis(k, m, t) >= keeper.DENSER  # ... but not along the height
    assert not keeper.enlarged_from(judge.verifier, paths[0], paths[1], keeper._oriented(judge, 0, 1))


def _copies_of_dog(tmp_path):
    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    return _judge_of(
        tmp_path,
        {
            "original.jpg": (photo, 95),
            "colour.jpg": (ImageOps.autocontrast(photo, cutoff=3), 92),
            "recompressed.jpg": (photo, 70),
            "grey.jpg": (photo.convert("L"), 92),
        },
    )


def test_two_files_each_found_made_from_the_other_are_left_to_the_keeper_order(tmp_path, monkeypatch):
    """``made_from`` claims checked by ``rekeep``: a keeper is made from a member unless the member
    is found made from the keeper too (a soft original and its crisp downscale can each look like
    an enlargement of the other); then the keeper order decides. The claims are scripted here (the
    relation is rekeep's input); the verification is real."""
    import numpy as np

    from indexer.dedup import keeper

    judge, _ = _copies_of_dog(tmp_path)
    claims = {(0, 1), (1, 0)}
    monkeypatch.setattr(keeper, "_made_one", lambda judge, a, b: (a, b) in claims)
    vectors, rank = np.eye(4, dtype=np.float32), np.arange(4)
    assert keeper.rekeep(judge, [(0, [1], [1.0])], vectors, rank)[0][:2] == (0, [1])
    claims.discard((1, 0))  # one claim alone is taken: the colour copy is the original
    assert keeper.rekeep(judge, [(0, [1], [1.0])], vectors, rank)[0][:2] == (1, [0])


def test_made_from_claims_in_a_circle_are_left_to_the_keeper_order(tmp_path, monkeypatch):
    """Claims that go round (the original taken for a crop with a flat canvas around it, the crop
    for a crop of a bannered copy, the bannered copy rightly made from the original and from a
    re-compressed copy): one of them is wrong, and the best file of the circle by the keeper order
    is kept - not the next file the last claim points to (a lesser copy)."""
    import numpy as np

    from indexer.dedup import keeper

    judge, _ = _copies_of_dog(tmp_path)
    # 0 original, 1 colour (the "crop"), 3 grey (the "bannered" copy), 2 recompressed
    claims = {(0, 1), (1, 3), (3, 0), (3, 2)}
    monkeypatch.setattr(keeper, "_made_one", lambda judge, a, b: (a, b) in claims)
    vectors, rank = np.eye(4, dtype=np.float32), np.arange(4)
    keep, members = keeper.rekeep(judge, [(0, [1, 2, 3], [1.0, 1.0, 1.0])], vectors, rank)[0][:2]
    assert keep == 0 and sorted(members) == [1, 2, 3]


def test_a_file_dropped_on_the_way_is_offered_to_the_final_keeper(tmp_path, monkeypatch):
    """``rekeep`` moves the keeper in rounds; each new keeper is offered every file the group held
    in any round, not only the last keeper's members: a crop of the original's right part, dropped
    while a crop of its left part was the keeper (the two share too little), joins the original
    when it is kept. The claims are scripted; the verification is real."""
    import numpy as np

    from indexer.dedup import keeper

    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    w, h = photo.size
    judge, _ = _judge_of(
        tmp_path,
        {
            "original.jpg": (photo, 95),
            "left.jpg": (photo.crop((0, 0, int(w * 0.6), h)), 92),
            "right.jpg": (photo.crop((int(w * 0.4), 0, w, h)), 92),
            "colour.jpg": (ImageOps.autocontrast(photo, cutoff=3), 92),
        },
    )
    check = judge.check(("duplicate",))
    assert list(check(0, np.array([1, 2, 3]), np.ones(3))) == [True, True, True]
    assert not check(1, np.array([2]), np.ones(1))[0]  # the two crops are not copies of each other
    claims = {(3, 1), (1, 0)}  # "the colour copy is made from the left crop", the left crop from the original
    monkeypatch.setattr(keeper, "_made_one", lambda judge, a, b: (a, b) in claims)
    vectors, rank = np.eye(4, dtype=np.float32), np.arange(4)
    keep, members = keeper.rekeep(judge, [(3, [0, 1, 2], [1.0, 1.0, 1.0])], vectors, rank)[0][:2]
    assert keep == 0 and sorted(members) == [1, 2, 3]


def test_a_soft_original_is_kept_over_its_own_downscale(tmp_path, make_index):
    """A soft photo (hymenoptera's ant: a web image, enlarged before we got it) holds no detail its
    0.72x downscale lacks, so the pixels call the original "enlarged" from its copy and kept the
    downscale over it (the generated set did, 2 of its 3 wrong keepers). The files' own facts say
    which came first (``quality.is_source``: the original is less compressed, older): an
    enlargement claim yields to them, as keeping the larger file loses nothing of the smaller."""
    import numpy as np

    from indexer.dedup import keeper

    ant = Image.open(DATA / "photos" / "hymenoptera" / "val" / "ants" / "2238242353_52c82441df.jpg").convert(
        "RGB"
    )
    w, h = ant.size
    images = {
        "ant.jpg": (ant, 95),
        "ant_small.jpg": (ant.resize((round(w * 0.72), round(h * 0.72)), Image.LANCZOS), 88),
        "ant_toned.jpg": (ImageOps.autocontrast(ant, cutoff=2), 90),
    }
    judge, paths = _judge_of(tmp_path, images)
    assert judge.check(("duplicate",))(0, np.array([1]), np.ones(1))[0]
    assert keeper.made_from(judge.verifier, paths[0], paths[1], keeper._oriented(judge, 0, 1)) == "enlarged"
    idx = make_index(tmp_path / "index")
    idx.update([tmp_path], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    groups = [[Path(m.path).name for m in g.files] for g in rep.duplicate_groups]
    assert len(groups) == 1 and groups[0][0] == "ant.jpg" and set(groups[0]) == set(images), groups


def test_which_file_is_the_source_by_its_own_facts(tmp_path):
    """``quality.is_source``: colour before grey, less compressed JPEG before more (a lossless file
    says nothing by that: it can be made from a JPEG), then the older file."""
    import os

    from indexer.dedup.quality import is_source, read_quality

    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    saved = {"q95.jpg": 95, "q80.jpg": 80, "grey.jpg": 95, "lossless.png": None}
    rows, qualities = [], []
    for n, (name, quality) in enumerate(saved.items()):
        path = tmp_path / name
        (photo.convert("L") if name == "grey.jpg" else photo).save(path, quality=quality or 95)
        os.utime(path, ns=(10**18 + n, 10**18 + n))  # in this order, oldest first
        st = path.stat()
        rows.append((n, str(path), "", photo.width, photo.height, st.st_size, st.st_mtime_ns))
        qualities.append(read_quality(str(path)))
    q95, q80, grey, png = range(4)
    assert is_source(rows, qualities, q95, q80) and not is_source(rows, qualities, q80, q95)
    assert is_source(rows, qualities, q80, grey) and not is_source(rows, qualities, grey, q80)
    # a PNG against a JPEG: the compression says nothing; the JPEG is older here
    assert is_source(rows, qualities, q80, png) and not is_source(rows, qualities, png, q80)


def test_a_turned_copy_of_a_picture_on_a_flat_background_is_made_from_it(tmp_path, make_index):
    """scikit-image's logo on white, enlarged, turned 5 degrees (corners filled black) and
    captioned, as the generated set makes one: the turn cut off flat white corners, so both
    sides of the turn are flat and ``turned_from`` could not tell which file was turned - the
    copy, with more pixels, was kept (the generated set's last wrong keeper). The corners cut
    off continue the white beside them; the black fill does not."""
    import numpy as np

    from indexer.dedup import keeper

    logo = Image.open(SAMPLES / "skimage" / "logo.png").convert("RGB")
    w, h = logo.size
    turned = logo.resize((round(w * 1.25), round(h * 1.25)), Image.LANCZOS).rotate(5, resample=Image.BICUBIC)
    judge, paths = _judge_of(
        tmp_path, {"logo.jpg": (logo, 95), "logo_turned.jpg": (_caption(turned, "SAMPLE"), 92)}
    )
    assert judge.check(("duplicate",))(1, np.array([0]), np.ones(1))[0]
    assert keeper.made_from(judge.verifier, paths[1], paths[0], keeper._oriented(judge, 1, 0)) == "turned"
    assert keeper.made_from(judge.verifier, paths[0], paths[1], keeper._oriented(judge, 0, 1)) == ""
    idx = make_index(tmp_path / "index")
    idx.update([tmp_path], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    assert [Path(g.keeper.path).name for g in rep.duplicate_groups] == ["logo.jpg"]


def test_a_group_started_at_a_copy_gives_way_to_its_best_file(tmp_path, make_index, monkeypatch):
    """The sorted keeper order is not transitive (its tolerances: pixels within 30%, JPEG quality
    within 2...), so among thousands of files it can put a copy before its original, and the group
    started there. On a second generated set (seed 1) 7 of 100 groups were kept by a mirrored copy
    so. Every group now gives way to its best file by the pairwise comparison (``best_of``) unless
    that file is made from its keeper. Here the order is turned round on purpose."""
    import numpy as np

    import indexer.dedup.find as find_module

    photo = Image.open(PIX / "dog01.jpg").convert("RGB")
    lib = tmp_path / "lib"
    lib.mkdir()
    photo.save(lib / "original.jpg", quality=95)
    ImageOps.mirror(photo).save(lib / "mirrored.jpg", quality=92)
    real = find_module.refine_rank

    def copy_first(rank, rows, qualities, policy, preferred=None):
        out = np.asarray(real(rank, rows, qualities, policy, preferred)).copy()
        names = [Path(r[1]).name for r in rows]
        a, b = names.index("original.jpg"), names.index("mirrored.jpg")
        if out[a] < out[b]:
            out[a], out[b] = out[b], out[a]
        return out

    monkeypatch.setattr(find_module, "refine_rank", copy_first)
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    groups = [[Path(m.path).name for m in g.files] for g in rep.duplicate_groups]
    assert groups == [["original.jpg", "mirrored.jpg"]], groups
    assert "less compression" in rep.duplicate_groups[0].keeper_reason
