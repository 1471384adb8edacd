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

# The offline demo: a 6-trial MetaXL search on tiny-pretrained (a tiny encoder pre-trained by
# MLM on the synthetic languages, built once on first use), racing configs on paired seeds (the
# default --repeats auto, README "When one seed is not enough"), then target-only, JT and the
# winner over 3 seeds. Everything it writes goes under $(RUNS) (MLflow store and artifacts, Tune state,
# the exported config).
DEMO_NAME ?= demo-$(shell date +%Y%m%d-%H%M%S)
RUNS ?= metaxl-runs
demo: setup
	METAXL_TUNE_RUNS=$(RUNS) $(BIN)/metaxl-tune search --task ner --target tk --preset demo --model tiny-pretrained \
		--num-samples 6 --name $(DEMO_NAME)
	METAXL_TUNE_RUNS=$(RUNS) $(BIN)/metaxl-tune best --name $(DEMO_NAME) --top 6 \
		-o $(RUNS)/configs/$(DEMO_NAME)-best.yaml --compare --seeds 3

# --durations=15: every run (and .ci/run) ends with its 15 slowest tests, so a change that slows
# the suite shows where.
# Two pytest-xdist workers, a test module each at a time (--dist loadfile: a module's shared
# search, Ray head and servers stay in its worker). Most of a search test is waiting (Ray's
# start, a trial worker's imports, the driver's end): one worker alone left the 2 cores idle
# 41 % of the suite. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

bench: setup
	$(BIN)/python bench/step.py
