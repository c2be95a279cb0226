"""Test session setup: CPU only, quiet TF, deterministic float32 math."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the torch CUDA build must not look for a GPU
