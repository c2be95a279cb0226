"""Loaded at the start of every interpreter the test suite starts (tests/conftest.py puts this
folder on PYTHONPATH): right after `import mindspore`, MindSpore's CPU kernels get one thread.

Why: MindSpore sizes its CPU kernel thread pool itself (up to 25 threads) and the suite runs two
test workers on two cores. The convolutional recipes' two PyNative steps (tests/test_configs.py)
took 21.1 and 26.0 CPU-s with that pool and 9.7 and 15.7 CPU-s with one thread, in half the
wall time, on the 2-core VM at rest. The setting must precede any device use, and MindSpore reads
no environment variable for it, hence this hook. Interpreters without mindspore are untouched.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


class _OneKernelThread(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "mindspore":
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the package
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_configure(module):
            exec_module(module)
            op_tuning = importlib.import_module("mindspore.device_context.cpu.op_tuning")
            op_tuning.threads_num(1)

        spec.loader.exec_module = exec_then_configure
        return spec


sys.meta_path.insert(0, _OneKernelThread())
