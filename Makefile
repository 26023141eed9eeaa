# Two commands for a newcomer: `make book` (set up if needed, build the report) and
# `make test` (set up if needed, run the whole suite). Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lthlib-installed

# The library finds data through root=, then $LTH_DATA_DIR, then ./data. Where the project's
# datasets sit beside the clone (../shared/data), point LTH_DATA_DIR at them unless it is set.
ifneq ($(wildcard ../shared/data/MNIST),)
export LTH_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: setup test test-fast book book-html bench clean-book

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The whole suite: library tests, notebooks through papermill at the smoke profile, nbval.
test: setup
	$(BIN)/python -m pytest -q --durations=12 tests

test-fast: setup
	$(BIN)/python -m pytest -q tests -m "not slow"

# Execute every chapter with papermill (reading/writing runs/), then build _build/html.
book: setup
	$(BIN)/python -m lthlib book build

# Build the HTML from the committed executed notebooks without re-executing them.
book-html: setup
	$(BIN)/python -m lthlib book html

bench: setup
	$(BIN)/python -m lthlib bench

clean-book:
	rm -rf _build
