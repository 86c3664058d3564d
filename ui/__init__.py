"""vgg-retrieval web UI (Streamlit): search, classification, duplicates, index status, feature maps.

Start it with ``vgg-retrieval ui --index DIR``. ``ui.logic.service`` holds the logic (no Streamlit import), the
pages under ``ui/pages`` only lay it out.
"""
