"""vgg-retrieval web UI (Streamlit): search, classification, duplicates, index status, feature maps.

Start it with ``vgg-retrieval ui --index DIR`` (``launch``). ``logic`` holds what the pages do,
without Streamlit; ``widgets`` the shared Streamlit pieces; ``pages`` only lay them out.
"""

__all__: list[str] = []
