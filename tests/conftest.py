"""Test session setup: CPU only, quiet TF, XLA tuned for compile time, one compilation cache.

Subprocesses (training runs, 8 fake devices, 2-process jax.distributed) inherit the environment.
"""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the torch CUDA build must not look for a GPU
# Every interpreter the suite starts loads tests/site/sitecustomize.py: MindSpore's CPU kernels on
# one thread (it says why). Helpers that set PYTHONPATH for a subprocess keep this entry.
SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
if SITE not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [SITE, os.environ.get("PYTHONPATH")]))

# The suite's cost is XLA:CPU compiling big graphs that then run a step or two (HRNet-W18's train
# step: 105 s to compile by default, 14 s with these flags; its 224 px forward runs 12% slower).
# Code generation only: float32 semantics are unchanged (no fast math), and the parity
# tolerances hold. main.py and the benchmarks keep XLA's defaults. XLA:CPU's older fusion
# emitters (no MLIR fusion pipeline) halve the train steps' compile on top of that (CPU-s with the
# other flags: HRNet-W18-small at 64 px 8.5 -> 4.2, HLG-mobile at 224 px 26.3 -> 17.8), with
# the same step time.
_FAST_COMPILE_FLAGS = (
    "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)
os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        *(f for f in _FAST_COMPILE_FLAGS if f not in os.environ.get("XLA_FLAGS", "")),
    ]
).strip()

# Many tests train the same short run (in this process, in xdist workers, in subprocesses); a
# persistent cache shared by all of them compiles each program once. Entries are keyed by the
# program, compile options, flags and devices, so a stale entry is never used.
_OUR_CACHE = os.path.join(tempfile.gettempdir(), f"hhl-test-xla-cache-{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _OUR_CACHE)
# Every program, not only those over JAX's default 1 s of compile time: a short training
# compiles ~100 small ones (initialisers, metrics, host transfers), again in every process.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The cache lives on after the run and every code change adds entries: past 2 GiB it is
# emptied before a run starts (ours only, never a cache named by JAX_COMPILATION_CACHE_DIR).
# Not jax's own bound (jax_compilation_cache_max_size): with it set, every write lists the
# whole cache and reads each entry's access time under one lock shared by all processes; a run
# writes ~5,000 entries (measured: the suite took 11% and 19% more CPU time in two runs from
# an empty cache).
_CACHE_LIMIT_BYTES = 2 << 30


def _empty_if_over_limit(directory: str) -> None:
    if not os.path.isdir(directory) or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # xdist's workers start after the controller has checked
    with os.scandir(directory) as entries:
        size = sum(e.stat().st_size for e in entries if e.is_file())
    if size > _CACHE_LIMIT_BYTES:
        shutil.rmtree(directory, ignore_errors=True)


_empty_if_over_limit(_OUR_CACHE)


# Fixtures that build every model or train: a test that uses one belongs to the slow tier
# (`make test-fast` runs `-m "not slow"`). Other slow tests carry @pytest.mark.slow themselves.
_SLOW_FIXTURES = {"port", "flax_side", "one_device", "eight_devices", "digits_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `--dist loadgroup` hands out the xdist groups first (most tests first), then the other
        # tests one by one in collection order. Slow ones first: the run then ends on short
        # tests on both workers, not on one worker's 60-s test while the other idles. Grouped
        # tests keep their order (a group's module fixtures are built once per module run).
        def fast_and_ungrouped(item) -> bool:
            marks = {m.name for m in item.iter_markers()}
            return not marks & {"slow", "xdist_group"}

        items.sort(key=fast_and_ungrouped)


# 60 steps of the demo recipe reach ~94% val top-1 (measured); TensorBoard on for its tags.
DIGITS_RUN = (
    "train.steps=60",
    "train.eval_every_epochs=100",
    "train.log_every_steps=20",
    "train.tensorboard=True",
)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> dict:
    """One short demo training, as main.py runs it (a subprocess), then exported:
    {'workdir', 'export', 'result'}. Read-only for its users (copy the workdir to write to it);
    they share the xdist group "digits_run", so one worker trains it once."""
    from tests.test_train_lib import _train  # imported here: after the environment above

    workdir = tmp_path_factory.mktemp("digits_run") / "run"
    out = _train(workdir, *DIGITS_RUN)
    return {"workdir": workdir, "export": out["export"], "result": out["result"]}
