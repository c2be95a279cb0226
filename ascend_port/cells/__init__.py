"""MindSpore cells (NCHW) mirroring the Flax NNX module trees of models/, one file per family."""
