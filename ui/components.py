"""Streamlit building blocks shared by the pages."""
from __future__ import annotations

import os
import re
import time

import streamlit as st

from .core import LARGE_PX, UPLOAD_TYPES, Service, Settings, human_bytes


def image_uploader(label: str, key: str, settings: Settings):
    mb = settings.max_upload_bytes / (1024 * 1024)
    return st.file_uploader(label, type=UPLOAD_TYPES, key=key,
                            help=f"JPEG, PNG, WebP, GIF, BMP or TIFF; at most {mb:.0f} MB and "
                                 f"{settings.max_pixels / 1e6:.0f} megapixels. Kept in memory only.")


def crop_box(key: str) -> tuple[float, float, float, float] | None:
    """Optional crop of the query: four sliders in percent; None when off."""
    if not st.checkbox("Crop a region of the query before searching", key=f"{key}_on"):
        return None
    c1, c2 = st.columns(2)
    left, right = c1.slider("Left / right edge (%)", 0, 100, (0, 100), key=f"{key}_x")
    top, bottom = c2.slider("Top / bottom edge (%)", 0, 100, (0, 100), key=f"{key}_y")
    return (left / 100, top / 100, right / 100, bottom / 100)


def md(text: str) -> str:
    """``text`` (a file name, a label) shown literally inside Markdown."""
    return _MD_SPECIAL.sub(r"\\\g<0>", str(text)).replace("\n", " ")


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]<>#|~$:]")


def hit_caption(hit) -> str:
    name = md(os.path.basename(getattr(hit, "where", hit.path)))  # video frames: "clip.mp4 @ 01:12.5"
    dims = f"{hit.width}x{hit.height}" if hit.width else "?"
    return f"**{hit.score:.3f}** · {name}  \n{md(hit.label or '-')} · {dims} · {human_bytes(hit.size)}"


def thumbnail(svc: Service, image_id: int, px: int | None = None, caption: str | None = None) -> None:
    data = svc.thumbnail(image_id) if px is None else svc.thumbnail(image_id, px)
    if data is None:
        st.warning("cannot show this image (missing or unreadable now)")
    else:
        st.image(data, caption=caption, width="stretch")


def detail(svc: Service, image_id: int, score: float | None = None, on_close=None, key: str = "detail") -> None:
    """A result shown larger, with its metadata and its path to copy."""
    row = svc.row(image_id)
    with st.container(border=True):
        c1, c2 = st.columns([3, 2])
        with c1:
            thumbnail(svc, row.id, LARGE_PX)
        with c2:
            st.markdown(f"### {md(os.path.basename(row.path))}")
            if score is not None:
                st.markdown(f"Similarity **{score:.4f}**")
            st.markdown("Path (copy with the button on the right):")
            st.code(row.path, language=None)
            meta = {"folder label": row.label or "-", "size": human_bytes(row.size),
                    "pixels": f"{row.width} x {row.height}", "format": row.format, "sha256": row.sha256,
                    "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.mtime_ns / 1e9)),
                    "indexed": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.indexed_at)),
                    "id": str(row.id)}
            st.table({"field": list(meta), "value": list(meta.values())})
            if on_close is not None:
                st.button("Close", key=f"{key}_close", on_click=on_close)


def classification(title: str, top: list[tuple[str, float]] | None, note: str) -> None:
    """Top-5 classes as a bar chart under ``title``, or the note that says why there are none."""
    st.markdown(f"#### {md(title)}")
    if not top:
        st.info(note)
        return
    import pandas as pd

    df = pd.DataFrame({"class": [c for c, _ in top], "probability": [p for _, p in top]})
    st.bar_chart(df, x="class", y="probability", horizontal=True, sort="-probability", height=200)
    st.markdown("Top classes: " + ", ".join(f"{c} {p:.1%}" for c, p in top))
