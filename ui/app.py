"""Streamlit entry point: ``streamlit run ui/app.py`` (``vgg-retrieval ui --index DIR`` does it for you).

The index folder comes from $VGG_RETRIEVAL_INDEX; the index and the model are opened once per
process (``ui.widgets.state``), not per interaction.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # `streamlit run` puts ui/ on the path, not the project root
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

st.set_page_config(page_title="vgg-retrieval", page_icon=":mag:", layout="wide")

pages = [
    st.Page("pages/search.py", title="Search", icon=":material/search:", default=True),
    st.Page("pages/duplicates.py", title="Duplicates", icon=":material/content_copy:"),
    st.Page("pages/index.py", title="Index", icon=":material/database:", url_path="index_status"),
    st.Page("pages/feature_maps.py", title="Feature maps", icon=":material/grid_view:"),
]
st.navigation(pages).run()
