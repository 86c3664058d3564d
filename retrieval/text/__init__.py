"""Search by words (seed 7.2): a joint text-image embedding over the index's stored VGG descriptors.

- ``captions``: training captions from what users have (folder labels, file names, sidecar
  ``IMAGE.txt`` / ``IMAGE.caption`` files). No torch.
- ``model``: the towers (a frozen BERT-family encoder with mean pooling, and two small MLPs that
  project text and VGG descriptors into one space), symmetric InfoNCE training with a learnable
  temperature, ONNX export of the text tower. Needs torch and transformers (train time only).
- ``search``: the query side (``TextQueryModel``): tokenizers + ONNX Runtime + numpy, no torch.
- ``train``: training the projections on captioned descriptors and writing ``INDEX/text/``.

Nothing here opens an index: searching one by words (``TextSearcher``) and gathering its captions
for training live on the index side, in its ``text_search`` module; the command is
``vgg-retrieval text-train``.

Everything the search needs lives in ``INDEX/text/`` (see ``search.TEXT_DIR``). Details and
measurements: docs/text-search.md.
"""
