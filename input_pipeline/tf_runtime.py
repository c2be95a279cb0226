"""The one place the input pipeline imports TensorFlow.

TensorFlow is only a CPU data loader here: hiding the GPUs before anything touches them keeps TF
from pre-allocating accelerator memory that JAX needs, and its C++ INFO/WARNING chatter is off. Modules that need TF import `tf` from here,
and only `input_pipeline` functions that read real data import those modules, so `import
input_pipeline` and the synthetic source never load TensorFlow.
"""

import os

# TF's C++ INFO/WARNING lines (CPU feature lists, ...) vary from machine to machine and bury real
# messages; its errors stay. TF 2.21 prints its oneDNN notice whatever the log level, on hosts
# where oneDNN is on (some x86 CPUs, not others): TF only decodes and resizes images here, so its
# oneDNN kernels are turned off, which also makes the pipeline's numbers the same on every host.
# Only takes effect before TensorFlow's first import; values the user set win.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError as e:  # TF's devices were initialised before this module ran.
    logging.warning("input_pipeline: could not hide GPUs from TensorFlow: %s", e)

__all__ = ["tf"]
