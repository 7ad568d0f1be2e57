# The two commands of the README:
#   make demo   set up (.venv) and run the demo: train GRU vs memoryless on a rewriting T-Maze, record a video
#   make test   set up (.venv) and run the tests
#
# torch: when the venv has no torch, install torch==2.13.0 first (a CPU build on our machines:
# a plain `pip install torch` would pull a multi-GB CUDA build). GPU users: create the venv,
# install the torch build for your CUDA first (https://pytorch.org), then run make; it keeps it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.rlmem-installed

.PHONY: demo test setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rlmem demo

# pytest exits 5 when it collects no test: say so instead of passing silently
test: $(STAMP)
	@$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
