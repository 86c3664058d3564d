"""The video models' option values, importable without torch (the CLI imports them at startup)."""

MODELS = ("vgg3d", "vgg-lstm")
RNNS = ("lstm", "gru")
TIME_PADDINGS = ("replicate", "zeros")
FITS = ("crop", "pad")
SAMPLINGS = ("uniform", "stride")
