"""Index: what the index holds, the files it could not read, and indexing a folder with progress."""

import os
import time

import streamlit as st

from retrieval import UserError
from ui.logic import checked_folder, human_bytes, index_class_rows
from ui.widgets import components as C
from ui.widgets import finish_indexing, forget_service, guard, indexing_job, service, settings, start_indexing

ss = st.session_state
st.title("Index")
cfg = settings()
svc = service(required=False)

if svc is not None:
    with guard():
        info = svc.info()
        c = st.columns([1, 1, 1, 1.4])
        c[0].metric("Images", f"{info['count']:,}")
        c[1].metric("Files with errors", f"{info['errors']:,}")
        c[2].metric("Size on disk", human_bytes(info["size_on_disk"]))
        updated = info["updated_at"]
        c[3].metric(
            "Last update",
            time.strftime("%d %b %Y %H:%M", time.localtime(updated)) if updated else "never",
            help=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(updated)) if updated else None,
        )
        off = info["offline"]  # folders that could not be listed: "offline since ..." (entries kept)
        folders = [f"{r} ({off[r]})" if r in off else r for r in info["roots"]]
        folders += [f"{f} ({why})" for f, why in off.items() if f not in info["roots"]]
        spec = svc.spec
        model = (
            f"{spec.arch.upper()}, {spec.pooling.upper()} pooling, {spec.input_size} px input, "
            f"{spec.descriptor_dim}-d descriptors; weights {os.path.basename(str(spec.weights))}"
        )
        rows = [
            ("Index folder", f"`{info['directory']}`"),
            ("Indexed folders", "  \n".join(f"`{f}`" for f in folders) or "-"),
            ("Model", model),
            ("Engine", info["engine"]),
            ("Vector index", info["index_type"]),
            *index_class_rows(svc),
        ]
        with st.container(key="index_facts"):  # lines that wrap on a phone (no clipped table)
            for name, value in rows:
                st.markdown(
                    f"**{name}:** {value if name in ('Index folder', 'Indexed folders') else C.md(value)}"
                )
        with st.expander("Model identity (hashes, to compare indexes)"):
            st.code(f"{spec.describe()}\n{spec.describe_weights()}", language=None, wrap_lines=True)
        st.markdown("#### Files that could not be indexed")
        errors = svc.errors()
        if errors:
            for e in errors[:200]:  # wraps on a phone, unlike a table
                st.markdown(f"`{e.path}`: {C.md(e.reason)}")
            if len(errors) > 200:
                st.caption(f"... and {len(errors) - 200:,} more: `vgg-retrieval info --errors`.")
        else:
            st.caption("None.")

st.markdown("#### Index a folder")
last = ss.get("index_run")
if last:
    (st.success if last["ok"] else st.error)(last["message"])
    if last.get("note"):
        st.caption(last["note"])


@st.fragment(run_every=0.5)
def follow_indexing() -> None:
    """The running job's progress, refreshed twice a second, and a Stop button (the job stops at the next
    file, the index keeping its last commit); once it ends, its outcome and a fresh status."""
    job = indexing_job(cfg.index_dir)
    if job is not None and job.running:
        fraction = min(1.0, job.done / job.total) if job.total else 0.0
        if st.button("Stop indexing", key="index_cancel"):
            job.cancel()
        if job.cancelling:
            text = "stopping (the index keeps its last commit)..."
        else:
            text = (
                (
                    f"{'calibrating the INT8 model' if job.stage == 'calibrating' else 'indexing'}: "
                    f"{job.done:,} / {job.total:,} images"
                )
                if job.total
                else "scanning the folder..."
            )
        st.progress(fraction, text=text)
        st.caption(f"Indexing {', '.join(job.folders) or 'every indexed folder'}.")
        return
    outcome = finish_indexing(cfg.index_dir)
    if outcome is not None:
        ss.index_run = {"ok": outcome.ok, "message": outcome.message, "note": outcome.note}
    if svc is None:
        forget_service()  # the index may exist now
    st.rerun()


if cfg.read_only:
    st.caption(
        "This UI was started read-only: index from the command line (`vgg-retrieval index FOLDER "
        "--index DIR`)."
    )
elif cfg.index_dir is not None:
    if indexing_job(cfg.index_dir) is not None:
        follow_indexing()
        st.stop()
    folder = st.text_input(
        "Folder to add or update (empty: update every indexed folder)",
        key="index_folder",
        placeholder="/photos",
    )
    if st.button("Start indexing", key="index_start", type="primary"):
        with guard():
            if folder.strip():
                folders = [checked_folder(folder)]
            elif svc is not None:
                folders = []  # every folder the index knows
            else:
                raise UserError("enter a folder to index")
            start_indexing(cfg.index_dir, folders, cfg.engine)
            ss.pop("index_run", None)
            st.rerun()
