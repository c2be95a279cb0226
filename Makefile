# Two environments: .venv for JAX/Flax, .venv-ascend for MindSpore 2.10 (its native library
# needs numpy 1.x; current jax needs numpy 2).
PYTHON ?= python3
VENV := .venv
ASCEND_VENV := .venv-ascend
PY := $(VENV)/bin/python
ASCEND_PY := $(ASCEND_VENV)/bin/python
# Tests that need MindSpore run it through this interpreter.
export HHL_ASCEND_PYTHON := $(abspath $(ASCEND_PY))

.PHONY: demo test test-fast lint venv venv-test venv-ascend clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# torch/timm/pytorchcv are test-only references (parity); the demo does not need them.
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(ASCEND_VENV)/.installed: requirements-ascend.txt
	$(PYTHON) -m venv $(ASCEND_VENV)
	$(ASCEND_PY) -m pip install -q --upgrade pip
	$(ASCEND_PY) -m pip install -q -r requirements-ascend.txt
	touch $@

venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test
venv-ascend: $(ASCEND_VENV)/.installed

demo: venv
	$(PY) main.py --config configs/demo.py --workdir runs/demo

lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: venv-test venv-ascend lint
	$(PY) -m pytest -n 2 --dist loadgroup -q tests

# The fast tier: no model parity at 224 px, no subprocess trainings (tests marked `slow`).
test-fast: venv-test venv-ascend
	$(PY) -m pytest -n 2 --dist loadgroup -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(ASCEND_VENV) runs .pytest_cache .ruff_cache
