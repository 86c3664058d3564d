"""Video classification on top of the VGG trunk (seed section 7.1).

- ``models``: ``VGG3D`` (the VGG cfg with 3x3x3 convolutions, C3D-style pooling, 2D weights inflated
  I3D-style) and ``VGGLSTM`` (a per-frame 2D VGG trunk, masked GAP per frame, LSTM/GRU, linear).
- ``clips``: labelled clip folders (video files through PyAV, or folders of frame images), frame
  sampling, the input policy, seeded train/val splits.
- ``train``: the training loop (the image recipe's schedule, SGD, label smoothing, checkpoints,
  resume) and checkpoint loading.
- ``synth``: small labelled clips made from real photos (pans and zooms), for tests and benchmarks.
- ``pipeline``: training on a clip folder and classifying clips as functions (what
  ``vgg-retrieval train-video`` and ``classify-video`` call).

See docs/video-models.md.
"""
