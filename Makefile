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

demo: setup
	$(BIN)/metaxl-tune train --model tiny --data synthetic --task ner --target tk --source related \
		--method metaxl --epochs 3 --lr 1e-3 --meta-lr 1e-3 --rtn-bottleneck 32 --source-size 2000 \
		--max-length 64 --output runs/demo-train

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/step.py
