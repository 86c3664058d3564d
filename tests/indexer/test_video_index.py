"""Videos in the index: keyframe sampling, frame rows pointing back to the video and its time,
incremental updates, bad videos, search output, dedup and the schema upgrade of older databases.

The clips are made here with PyAV from real photos (slow zooms over one photo per scene), tiny and
short so that the whole module runs in seconds.
"""

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer import Index
from indexer.cli import main
from indexer.storage.tables import ImageRow
from indexer.update.decode import decode_items
from indexer.update.scan import Entry, classify
from indexer.video.keyframes import (
    VideoError,
    VideoOptions,
    format_time,
    read_frame,
    sample_video,
    sniff_video,
)
from retrieval.preprocess import prepare

av = pytest.importorskip("av")

SCENES = ["pixabay/ship01.jpg", "opencv/fruits.jpg", "skimage/astronaut.png"]  # 2 s each
PHOTOS = ["skimage/coffee.png", "pixabay/cat01.jpg"]


def make_clip(path, photos, seconds=2.0, fps=10, size=(128, 96), codec="mpeg4", **options):
    """A clip with one scene per photo: a slow zoom (15 %) into its centre."""
    out = av.open(str(path), "w", options=options)
    s = out.add_stream(codec, rate=fps)
    s.width, s.height = size
    s.pix_fmt = "yuv420p"
    for photo in photos:
        im = Image.open(SAMPLES / photo).convert("RGB")
        n = int(seconds * fps)
        for i in range(n):
            z = 1.0 + 0.15 * i / n
            w, h = im.width / z, im.height / z
            x0, y0 = (im.width - w) / 2, (im.height - h) / 2
            frame = im.resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
            for p in s.encode(av.VideoFrame.from_image(frame)):
                out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


@pytest.fixture(scope="module")
def clips(module_tmp):
    d = module_tmp("clips")
    return {
        "three": make_clip(d / "three.mp4", SCENES),
        "two": make_clip(d / "two.mp4", SCENES[:2]),
        "faststart": make_clip(d / "faststart.mp4", SCENES, codec="libx264", movflags="faststart"),
        "webm": make_clip(d / "clip.webm", SCENES[:1], codec="libvpx"),
    }


def _frames(idx, video=None):
    with idx.store.session() as s:
        q = s.query(ImageRow).filter(ImageRow.source.isnot(None))
        if video is not None:
            q = q.filter(ImageRow.source == str(video))
        return sorted(((r.source, r.time_s, r.path, r.id) for r in q), key=lambda t: (t[0], t[1]))


# --- recognising and sampling ----------------------------------------------------------------------
def test_sniff_video_containers(clips, tmp_path):
    assert sniff_video(clips["three"].read_bytes()[:64]) == "MP4"
    assert sniff_video(clips["webm"].read_bytes()[:64]) == "WEBM"
    assert sniff_video(b"RIFF\x10\x00\x00\x00AVI LIST") == "AVI"
    assert sniff_video(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") is None  # a HEIC photo
    assert sniff_video(b"\xff\xd8\xff\xe0") is None
    assert sniff_video(b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A isom") is None  # music
    song = tmp_path / "song.mka"  # Matroska audio: skipped quietly, like any non-image file
    song.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(60))
    assert classify(Entry(str(song), str(tmp_path), song.stat().st_size, 1)) is None
    # by content, not by name: a clip named .jpg is a video; text named .mp4 is reported
    named_jpg = tmp_path / "holiday.jpg"
    named_jpg.write_bytes(clips["two"].read_bytes())
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    for p in (named_jpg, text):
        e = Entry(str(p), str(tmp_path), p.stat().st_size, p.stat().st_mtime_ns)
        assert classify(e) is e
    assert Entry(str(named_jpg), "").kind == "image"
    assert classify(Entry(str(named_jpg), str(tmp_path), 1, 1)).kind == "video"
    e = classify(Entry(str(text), str(tmp_path), text.stat().st_size, 1))
    assert e.problem == "not a video: content is text"


def test_sampling_scene_changes_and_interval(clips):
    s = sample_video(str(clips["three"]), 64)
    times = [f.time_s for f in s.frames]
    assert times[0] == 0.0
    for lo in (0.0, 2.0, 4.0):  # at least one frame per scene, the cut found within a frame
        assert any(lo <= t < lo + 2.0 for t in times), times
    assert any(abs(t - 2.0) < 0.11 for t in times) and any(abs(t - 4.0) < 0.11 for t in times), times
    assert (s.width, s.height, s.decoded, s.format) == (128, 96, 60, "MP4/mpeg4")
    assert s.duration_s == pytest.approx(6.0, abs=0.2)
    for f in s.frames:  # the same input policy as a photo: longer side 64, padded
        assert f.prepared.array.shape == (64, 64, 3) and f.prepared.valid == (48, 64)
    # no scene detection: one frame every 1.5 s
    s = sample_video(str(clips["three"]), 64, VideoOptions(interval_s=1.5, scene=0))
    assert [f.time_s for f in s.frames] == [0.0, 1.5, 3.0, 4.5]
    # the cap: at most 3 frames, interval widened to duration / (3 // 2)
    s = sample_video(str(clips["three"]), 64, VideoOptions(interval_s=0.5, scene=0.0, max_frames=3))
    assert len(s.frames) <= 3 and s.frames[0].time_s == 0.0
    s = sample_video(
        str(clips["three"]), 64, VideoOptions(interval_s=0.1, scene=0.01, min_gap_s=0.1, max_frames=4)
    )
    assert len(s.frames) == 4 and s.frames[0].time_s == 0.0


def test_read_frame_gives_the_sampled_pixels(clips):
    for name in ("three", "faststart", "webm"):
        s = sample_video(str(clips[name]), 64)
        assert len(s.frames) >= 1
        for f in s.frames:
            again = prepare(read_frame(clips[name], f.time_s), 64)
            assert np.array_equal(again.array, f.prepared.array), (name, f.time_s)


def test_decode_items_of_a_video(clips):
    items = decode_items((str(clips["three"]), str(clips["three"].parent), 64, 0))
    assert len(items) >= 3
    assert [d.more for d in items] == [True] * (len(items) - 1) + [False]
    st = clips["three"].stat()
    for d in items:
        assert d.problem is None and d.source == str(clips["three"])
        assert d.path == f"{clips['three']}#t={d.time_s:.3f}"
        assert (d.size, d.mtime_ns, d.width, d.height) == (st.st_size, st.st_mtime_ns, 128, 96)
        assert d.array.shape == (64, 64, 3) and len(d.sha256) == 64


def test_bad_videos_are_reported(tmp_path, clips):
    folder = tmp_path / "bad"
    folder.mkdir()
    data = clips["three"].read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: unreadable
    data = clips["faststart"].read_bytes()
    (folder / "faststart_cut.mp4").write_bytes(data[: len(data) * 6 // 10])  # index first: frames stop early
    (folder / "random.mp4").write_bytes(os.urandom(4000))
    (folder / "empty.webm").write_bytes(b"")
    (folder / "header_only.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + os.urandom(3000))
    reasons = {}
    for p in sorted(folder.iterdir()):
        e = classify(Entry(str(p), str(folder), p.stat().st_size, p.stat().st_mtime_ns))
        if e.problem:
            reasons[p.name] = e.problem
            continue
        items = decode_items((str(p), str(folder), 64, 0))
        assert len(items) == 1 and items[0].array is None, p.name
        reasons[p.name] = items[0].problem
    assert reasons["random.mp4"] == "not a video: content is unknown binary data"
    assert reasons["empty.webm"] == "empty file (0 bytes)"
    assert reasons["cut.mp4"].startswith("cannot read video: corrupt, truncated or unsupported")
    assert reasons["header_only.mkv"].startswith("cannot read video")
    assert reasons["faststart_cut.mp4"].startswith("truncated video: frames end at 00:0")
    assert all("\n" not in r for r in reasons.values())
    with pytest.raises(VideoError):
        sample_video(str(folder / "cut.mp4"), 64)


def test_format_time():
    assert format_time(0) == "00:00.0"
    assert format_time(72.5) == "01:12.5"
    assert format_time(3600 + 62.25) == "1:01:02.2"
    assert format_time(None) == ""


# --- the index -------------------------------------------------------------------------------------
def test_index_videos_with_photos(tmp_path, make_index, clips, capsys):
    folder = tmp_path / "media"
    copy_photos(folder, PHOTOS, flat=True)
    video = folder / "trips" / "three.mp4"
    video.parent.mkdir()
    video.write_bytes(clips["three"].read_bytes())
    (folder / "broken.mp4").write_bytes(clips["three"].read_bytes()[:3000])
    idx = make_index(tmp_path / "ix")
    r = idx.update([folder], workers=1, progress=False)
    frames = _frames(idx, video)
    times = [t for _, t, _, _ in frames]
    assert len(frames) >= 3 and r.embedded == len(frames) + 2 and idx.count == len(frames) + 2
    assert all(any(lo <= t < lo + 2 for t in times) for lo in (0, 2, 4)), times
    assert r.added == len(frames) + 2 and r.updated == 0
    assert [p for p, _ in r.errors] == [str(folder / "broken.mp4")]
    assert "video" in r.errors[0][1]
    assert [e.path for e in idx.store.errors()] == [str(folder / "broken.mp4")]
    # every frame row points back to the video: path, label, size, sha256 of the file, time
    row = idx.store.row_by_path(frames[1][2])
    st = video.stat()
    assert (row.source, row.root, row.label, row.size, row.mtime_ns) == (
        str(video),
        str(folder),
        "trips",
        st.st_size,
        st.st_mtime_ns,
    )
    assert row.format == "MP4/mpeg4" and (row.width, row.height) == (128, 96)
    assert idx.indexed_file(row.id) == video and idx.indexed_file(row.path) == video
    assert idx.check().ok
    assert idx.check(deep=100).ok  # frames are decoded again from the video and re-embedded

    # a photo used in scene 2 finds a frame of scene 2 first
    hits = idx.search(SAMPLES / SCENES[1], k=3)
    assert hits[0].source == str(video) and 2.0 <= hits[0].time_s < 4.0, hits[0]
    assert hits[0].where == f"{video} @ {format_time(hits[0].time_s)}"
    photo_hit = idx.search(folder / "coffee.png", k=1)[0]
    assert photo_hit.time_s is None and photo_hit.source is None and photo_hit.where == photo_hit.path

    # the command line shows the moment; --json gains time_s
    q = str(SAMPLES / SCENES[1])
    assert main(["search", q, "--index", str(tmp_path / "ix"), "-k", "1", "--engine", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert f"{video} @ 00:0" in out and "#t=" not in out
    assert (
        main(["search", q, "--index", str(tmp_path / "ix"), "-k", "4", "--json", "--engine", "onnxruntime"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)["results"]
    assert res[0]["source"] == str(video) and 2.0 <= res[0]["time_s"] < 4.0
    assert any(set(x) == {"path", "score", "id"} for x in res)  # photos: as before

    # unchanged folder: nothing decoded or embedded again, the video counts its frames as unchanged
    ids = [i for *_, i in frames]
    r = idx.update([folder], workers=0, progress=False)
    assert (r.added, r.updated, r.removed, r.embedded, r.errors) == (0, 0, 0, 0, [])
    assert r.unchanged == len(frames) + 2
    assert [i for *_, i in _frames(idx, video)] == ids

    # dedup: photos only (frames are not files to keep or move)
    from indexer.dedup import find_duplicates

    rep = find_duplicates(idx, threshold=0.0)
    assert rep.stats["images"] == 2
    assert all("#t=" not in m.path for g in rep.groups for m in [g.keeper] + g.members)

    # the video changes (now two scenes): its frames are replaced, no frame of scene 3 is left
    video.write_bytes(clips["two"].read_bytes())
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    r = idx.update([folder], workers=0, progress=False)
    new = _frames(idx, video)
    assert new and all(t < 4.0 for _, t, _, _ in new) and r.embedded == len(new)
    old_paths, new_paths = {p for _, _, p, _ in frames}, {p for _, _, p, _ in new}
    assert (r.added, r.updated, r.removed) == (
        len(new_paths - old_paths),
        len(new_paths & old_paths),
        len(old_paths - new_paths),
    )
    assert r.removed >= 1  # scene 3's frames
    assert all(idx.store.row_by_path(p).size == video.stat().st_size for _, _, p, _ in new)
    assert idx.count == len(new) + 2 and idx.check(deep=100).ok

    # the video disappears: all its frames leave the index; the broken one is fixed
    video.unlink()
    (folder / "broken.mp4").write_bytes(clips["two"].read_bytes())
    r = idx.update([folder], workers=0, progress=False)
    assert _frames(idx, video) == [] and r.removed == len(new) and r.errors == []
    assert len(_frames(idx, folder / "broken.mp4")) >= 2 and idx.store.errors() == []
    assert idx.check().ok


def test_video_frames_commit_together(tmp_path, make_index, clips):
    """commit_every=1: each commit holds whole videos, so an interrupted run never leaves half a
    video that the next run would take for unchanged."""
    folder = tmp_path / "v"
    folder.mkdir()
    for n in ("a", "b"):
        (folder / f"{n}.mp4").write_bytes(clips["three"].read_bytes())
    copy_photos(folder, PHOTOS[:1], flat=True)
    idx = make_index(tmp_path / "ix", batch_size=2)
    commits = []
    real = idx._commit

    def spy(added, *args):
        commits.append([d.source or d.path for d, _ in added])
        return real(added, *args)

    idx._commit = spy
    idx.update([folder], workers=0, progress=False, commit_every=1)
    n = len(_frames(idx, folder / "a.mp4"))
    assert n >= 3 and len(_frames(idx, folder / "b.mp4")) == n
    for c in commits:
        for v in (str(folder / "a.mp4"), str(folder / "b.mp4")):
            assert c.count(v) in (0, n), commits
    assert idx.check().ok


def test_kind_change_and_disabled_videos(tmp_path, make_index, clips, monkeypatch):
    folder = tmp_path / "k"
    folder.mkdir()
    f = folder / "thing.mp4"
    Image.open(SAMPLES / "pixabay/cat01.jpg").save(f, "JPEG")  # a photo with a video's name
    idx = make_index(tmp_path / "ix")
    idx.update([folder], workers=0, progress=False)
    assert idx.store.row_by_path(str(f)) is not None and _frames(idx) == []
    f.write_bytes(clips["two"].read_bytes())  # now really a video
    os.utime(f, ns=(1, 10**18))
    idx.update([folder], workers=0, progress=False)
    assert idx.store.row_by_path(str(f)) is None and len(_frames(idx, f)) >= 2 and idx.check().ok
    n = len(_frames(idx, f))
    monkeypatch.setenv("VGG_RETRIEVAL_VIDEO", "0")  # videos are skipped
    r = idx.update([folder], workers=0, progress=False)
    assert r.unchanged == n and idx.count == n  # an unchanged file costs one stat: kept as it was
    os.utime(f, ns=(1, 10**18 + 1))
    r = idx.update([folder], workers=0, progress=False)
    assert idx.count == 0 and r.errors == [] and idx.check().ok


def test_old_database_gets_the_new_columns(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    idx.close()
    db = tmp_path / "ix" / "index.sqlite"
    con = sqlite3.connect(db)  # as made by an earlier version: no source / time_s
    con.execute("DROP INDEX ix_images_source")
    con.execute("ALTER TABLE images DROP COLUMN source")
    con.execute("ALTER TABLE images DROP COLUMN time_s")
    con.commit()
    assert "source" not in {r[1] for r in con.execute("PRAGMA table_info(images)")}
    con.close()
    with Index.open(tmp_path / "ix") as idx:
        assert idx.check().ok and idx.count == 6
        hit = idx.search(photos / "pixabay" / "cat01.jpg", k=1)[0]
        assert hit.time_s is None and hit.path.endswith("cat01.jpg")
    con = sqlite3.connect(db)
    cols = {r[1] for r in con.execute("PRAGMA table_info(images)")}
    idxs = {r[1] for r in con.execute("PRAGMA index_list(images)")}
    con.close()
    assert {"source", "time_s"} <= cols and "ix_images_source" in idxs


def test_ui_search_shows_the_moment_and_plays_it(tmp_path, make_index, clips, monkeypatch):
    from streamlit.testing.v1 import AppTest

    folder = tmp_path / "m"
    copy_photos(folder, PHOTOS[:1], flat=True)
    video = folder / "three.mp4"
    video.write_bytes(clips["three"].read_bytes())
    idx = make_index(tmp_path / "ix")
    idx.update([folder], workers=0, progress=False)
    frame = next(f for f in _frames(idx, video) if 2.0 <= f[1] < 4.0)
    idx.close()
    monkeypatch.setenv("VGG_RETRIEVAL_INDEX", str(tmp_path / "ix"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "ui" / "app.py"), default_timeout=60)
    at.run()
    at.text_input(key="path").set_value(frame[2]).run()  # "more like this" on a frame's path
    assert not at.exception, at.exception
    own = [m.value for m in at.markdown if m.value.startswith("**This image** is in the index")]
    # the queried frame is the query itself: named above the results (with its moment), not a result
    assert own and f"three.mp4 @ {format_time(frame[1])}".replace(":", "\\:") in own[0], own
    caps = [m.value for m in at.markdown if 'class="vr-cap"' in m.value]  # the result grid's captions
    assert caps and not any(f"@ {format_time(frame[1])}" in c for c in caps), caps
    assert any(f"three.mp4 @ {format_time(frame[1] + 2)}" in c for c in caps)  # another moment is a result
    assert not at.warning  # every thumbnail (frames decoded from the video) could be shown
    at.button(key=f"own_{frame[3]}").click().run()
    assert not at.exception, at.exception
    videos = at.get("video")
    assert len(videos) == 1 and videos[0].proto.start_time == int(frame[1])
