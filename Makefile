# Everything a fresh machine needs: `make demo` runs the offline demo, `make test` the tests.
# Both create .venv first. torch is pinned to the 2.13.0 CPU build: an unpinned torch pulls
# several GB of CUDA packages. GPU users install their CUDA torch 2.13.0 before `pip install -e .`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# An offline MetaXL search (tiny model, synthetic data), then the winner exported as a config.
DEMO_NAME ?= demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(BIN)/metaxl-tune search --task ner --target tk --preset demo --num-samples 6 --name $(DEMO_NAME)
	$(BIN)/metaxl-tune best --name $(DEMO_NAME) --top 6 -o runs/$(DEMO_NAME)-best.yaml

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/step.py
