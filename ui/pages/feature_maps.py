"""Feature maps: what the VGG trunk sees, layer by layer (edges -> textures -> parts).

The forward pass runs module by module with a progress bar and a Stop button (a click stops it at the
next module); a stopped computation is not restarted until the inputs change or the user asks."""

import streamlit as st
from PIL import Image

from retrieval import load_and_prepare
from ui.logic import conv_layers, feature_maps, maps_grid
from ui.widgets import components as C
from ui.widgets import guard, service, settings

ss = st.session_state
C.page_style()
st.title("Feature maps")
cfg = settings()
svc = service()
if svc is None:
    st.stop()

st.caption(
    "Activations of one conv layer of the index's model for an image: early layers respond to edges "
    "and colours, middle ones to textures, the last ones to object parts. The most active channels "
    "are shown, each scaled to its own maximum."
)


def _stop(job) -> None:
    ss.fm_stopped = job


def _again() -> None:
    ss.fm_stopped = None


with guard():
    try:
        with st.spinner("Loading the torch model..."):
            net = svc.net()
    except ImportError as e:
        st.error(
            f"Feature maps need PyTorch, which is not installed here ({e.name or e}): install it "
            f"(see the README's install lines) and restart the UI. Search and indexing work without it."
        )
        st.stop()
    layers = conv_layers(net)
    c1, c2 = st.columns(2)
    with c1:
        upload = C.image_uploader("Upload an image", "fm_upload", cfg)
        path_text = st.text_input("...or the path of an indexed image", key="fm_path")
    with c2:
        by_name = {l.name: l for l in layers}
        name = st.selectbox(
            "Conv layer",
            list(by_name),
            index=len(layers) // 2,
            key="fm_layer",
            format_func=lambda x: f"{x} ({by_name[x].channels} maps)",
        )
        layer = by_name[name]
        n = st.select_slider("Maps shown", [8, 16, 32, 64], value=32, key="fm_n")

    im = None
    if upload is not None:
        from ui.logic import read_upload

        im, source = read_upload(upload.name, upload.getvalue(), cfg), ("upload", upload.file_id)
    elif path_text.strip():
        row = svc.row_for_path(path_text)
        im, source = svc.open_row(row, max_pixels=cfg.max_pixels), ("row", row.id, row.mtime_ns)
    if im is None:
        st.info("Upload an image or paste the path of an indexed image.")
        st.stop()

    job = (source, layer.name, n)
    done = ss.get("fm_done")
    if done is None or done[0] != job:
        if ss.get("fm_stopped") == job:
            st.warning("Stopped before the maps were computed.")
            st.button("Compute the maps", key="fm_again", on_click=_again)
            st.stop()
        prepared = load_and_prepare(im, svc.spec.input_geometry)
        working = st.empty()
        with working.container():
            st.button("Stop", key="fm_cancel", on_click=_stop, args=(job,))
            bar = st.progress(0.0, text=f"computing {layer.name}...")
        with svc.lock:
            maps = feature_maps(
                net,
                prepared,
                layer,
                progress=lambda i, total: bar.progress(
                    i / total, text=f"computing {layer.name}: module {i} of {total}"
                ),
            )
        working.empty()
        grid, chosen = maps_grid(maps, n=min(n, len(maps)))
        vh, vw = prepared.valid
        ss.fm_done = done = (job, Image.fromarray(prepared.array[:vh, :vw]), grid, chosen, maps.shape)
    _, model_input, grid, chosen, shape = done
    a, b = st.columns([1, 3])
    a.image(model_input, caption=f"model input ({model_input.width}x{model_input.height})", width="stretch")
    b.image(
        grid,
        caption=f"{layer.name}: {len(chosen)} of {shape[0]} maps, {shape[2]}x{shape[1]} "
        f"cells each (channels {', '.join(map(str, chosen[:8]))}...)",
        width="stretch",
    )
