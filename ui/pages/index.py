"""Index: what the index holds, the files it could not read, and indexing a folder with progress."""
import time

import streamlit as st

from ui.core import human_bytes, run_indexing
from ui.state import forget_service, guard, service, settings

ss = st.session_state
st.title("Index")
cfg = settings()
svc = service(required=False)

if svc is not None:
    with guard():
        info = svc.info()
        c = st.columns(4)
        c[0].metric("Images", f"{info['count']:,}")
        c[1].metric("Files with errors", f"{info['errors']:,}")
        c[2].metric("Size on disk", human_bytes(info["size_on_disk"]))
        updated = info["updated_at"]
        c[3].metric("Last update", time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)) if updated else "never")
        st.table({"": ["Folder", "Model", "Engine", "Vector index", "Classes", "Indexed folders"],
                  "value": [info["directory"], info["model"], info["engine"], info["index_type"],
                            str(info["classes"]) if info["classes"] else "none (no classifier)",
                            "\n".join(info["roots"]) or "-"]})
        st.markdown("#### Files that could not be indexed")
        errors = svc.index.store.errors()
        if errors:
            st.dataframe({"path": [e.path for e in errors], "reason": [e.reason for e in errors]},
                         width="stretch", hide_index=True)
        else:
            st.caption("None.")

st.markdown("#### Index a folder")
last = ss.get("index_run")
if last:
    (st.success if last["ok"] else st.error)(last["message"])
if cfg.read_only:
    st.caption("This UI was started read-only: index from the command line (`vgg-retrieval index FOLDER "
               "--index DIR`).")
elif cfg.index_dir is not None:
    folder = st.text_input("Folder to add or update (empty: update every indexed folder)", key="index_folder",
                           placeholder="/photos")
    if st.button("Start indexing", key="index_start", type="primary"):
        with guard():
            folders = folder.strip() or (svc.roots() if svc is not None else [])
            if not folders:
                raise ValueError("enter a folder to index")
            bar = st.progress(0.0, text="scanning the folder...")
            status = st.empty()

            def progress(done: int, total: int, line: str) -> None:
                if total:
                    bar.progress(min(1.0, done / total), text=f"indexing: {done:,} / {total:,} images")
                if line and not line.startswith("indexing:"):
                    status.caption(line[:300])

            runs = [run_indexing(f, cfg.index_dir, cfg.engine, progress)
                    for f in ([folders] if isinstance(folders, str) else folders)]
            ok = all(r.returncode == 0 for r in runs)
            bar.progress(1.0, text="done" if ok else "failed")
            if ok:
                msg = " / ".join(r.summary for r in runs)
            else:
                bad = next(r for r in runs if r.returncode != 0)
                msg = "Indexing failed: " + (" ".join(bad.lines[-3:]) or f"exit status {bad.returncode}")
            ss.index_run = {"ok": ok, "message": msg}
            if svc is None:
                forget_service()  # the index may exist now
            st.rerun()
