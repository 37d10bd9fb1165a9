# Two commands set everything up on a fresh machine:
#   make demo   the quickstart notebook run headless on the embedded default (no download of any
#               model or data set): executed notebook, HTML rendering and run folder in $(OUT)
#   make test   the whole test suite, browser tests included
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel goes in first: an unpinned torch makes pip pull several GB of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/demo
# The browser tests drive Debian's chromium with Playwright (Playwright's own browser download
# needs network access that CI machines do not have).
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test install browser clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev,minilm,lora]"
	touch $@

install: $(VENV)/.installed

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "The browser tests need chromium: run 'apt-get install chromium' as root." >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

browser: $(CHROMIUM)

demo: $(VENV)/.installed
	$(PY) -m workbench run notebooks/quickstart.ipynb --out $(OUT)

test: $(VENV)/.installed $(CHROMIUM)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs .cache
