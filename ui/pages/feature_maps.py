"""Feature maps: what the VGG trunk sees, layer by layer (edges -> textures -> parts)."""
import streamlit as st
from PIL import Image

from retrieval.preprocess import load_and_prepare
from ui import components as C
from ui.feature_maps import conv_layers, feature_maps, maps_grid
from ui.state import guard, service, settings

st.title("Feature maps")
cfg = settings()
svc = service()
if svc is None:
    st.stop()

st.caption("Activations of one conv layer of the index's model for an image: early layers respond to edges "
           "and colours, middle ones to textures, the last ones to object parts. The most active channels "
           "are shown, each scaled to its own maximum.")

with guard():
    with st.spinner("Loading the torch model..."):
        net = svc.net()
    layers = conv_layers(net)
    c1, c2 = st.columns(2)
    with c1:
        upload = C.image_uploader("Upload an image", "fm_upload", cfg)
        path_text = st.text_input("...or the path of an indexed image", key="fm_path")
    with c2:
        by_name = {l.name: l for l in layers}
        name = st.selectbox("Conv layer", list(by_name), index=len(layers) // 2, key="fm_layer",
                            format_func=lambda x: f"{x} ({by_name[x].channels} maps)")
        layer = by_name[name]
        n = st.select_slider("Maps shown", [8, 16, 32, 64], value=32, key="fm_n")

    im = None
    if upload is not None:
        from ui.core import read_upload

        im = read_upload(upload.name, upload.getvalue(), cfg)
    elif path_text.strip():
        im = svc.open_row(svc.row_for_path(path_text), max_pixels=cfg.max_pixels)
    if im is None:
        st.info("Upload an image or paste the path of an indexed image.")
        st.stop()

    prepared = load_and_prepare(im, svc.spec.input_size)
    with svc.lock:
        maps = feature_maps(net, prepared, layer)
    grid, chosen = maps_grid(maps, n=min(n, len(maps)))
    vh, vw = prepared.valid
    a, b = st.columns([1, 3])
    a.image(Image.fromarray(prepared.array[:vh, :vw]), caption=f"model input ({vw}x{vh})", width="stretch")
    b.image(grid, caption=f"{layer.name}: {len(chosen)} of {len(maps)} maps, {maps.shape[2]}x{maps.shape[1]} "
                          f"cells each (channels {', '.join(map(str, chosen[:8]))}...)", width="stretch")
