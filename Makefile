# One command does the set-up and runs every test: `make test`; the main job on embedded data: `make demo`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export MPLBACKEND := Agg

DEMO_OUT ?= sr3xct_demo
DEMO_ARGS ?=

.PHONY: demo test setup sync-check clean-check nbtest pytest docs-check docs export clean bench lab

test: setup sync-check clean-check nbtest pytest docs-check
	@echo "make test: all checks passed"

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

# the whole job on embedded data: train a small model (at most 7 min), super-resolve held-out slices, report
demo: setup
	$(BIN)/sr3xct demo --out $(DEMO_OUT) $(DEMO_ARGS)

# JupyterLab on the notebooks (installed on first use; figures show inline: the Agg backend of the tests is unset)
lab: setup
	@test -x $(BIN)/jupyter-lab || $(PY) -m pip install -q jupyterlab
	env -u MPLBACKEND $(BIN)/jupyter lab nbs/ $(if $(filter 0,$(shell id -u)),--allow-root,)

# the library is what the notebooks export: exporting changes nothing
sync-check: setup
	@before="$$(git status --porcelain; git diff)"; $(BIN)/nbdev_export; \
	after="$$(git status --porcelain; git diff)"; \
	if [ "$$before" != "$$after" ]; then git status --short; echo "sync check: nbdev_export changed files; run nbdev_export and commit notebooks and library together"; exit 1; fi
	@echo "sync check: ok"

# notebooks are committed clean: cleaning changes nothing
clean-check: setup
	@before="$$(git status --porcelain; git diff)"; $(BIN)/nbdev_clean; \
	after="$$(git status --porcelain; git diff)"; \
	if [ "$$before" != "$$after" ]; then git status --short; echo "clean check: nbdev_clean changed notebooks; run nbdev_clean and commit"; exit 1; fi
	@echo "clean check: ok"

nbtest: setup
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: setup
	$(BIN)/pytest -q tests/

docs-check: setup
	$(PY) tools/docs.py

# the docs site (needs Quarto: https://quarto.org)
docs: setup
	$(PY) tools/docs.py --render

export: setup
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

clean:
	rm -rf _proc _docs .pytest_cache
