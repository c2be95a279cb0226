"""The one place the input pipeline imports TensorFlow.

TensorFlow is only a CPU data loader here: hiding the GPUs before anything touches them keeps TF
from pre-allocating accelerator memory that JAX needs. Modules that need TF import `tf` from here,
and only `input_pipeline` functions that read real data import those modules, so `import
input_pipeline` and the synthetic source never load TensorFlow.
"""

import tensorflow as tf
from absl import logging

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError as e:  # TF's devices were initialised before this module ran.
    logging.warning("input_pipeline: could not hide GPUs from TensorFlow: %s", e)

__all__ = ["tf"]
