# Task runner. Every target runs in the current Python environment; `make ci` builds its own.
PYTHON ?= python
OUT ?= torchlc_tour.png

.PHONY: help install test test-fast bench docs lint format tour ci clean

help:
	@echo "targets: install test test-fast bench docs lint format tour ci clean"

install:            ## editable install with the dev extra (torch pinned to the CPU build here)
	$(PYTHON) -m pip install torch==2.13.0 -e ".[dev]"

test:               ## the whole test suite, as in the README
	$(PYTHON) -m pytest -q

test-fast:          ## everything but tests marked slow
	$(PYTHON) -m pytest -q -m "not slow"

bench:              ## benchmarks (python -m torchlc.bench); never part of the tests
	$(PYTHON) -m torchlc.bench

docs:               ## regenerate the docs' figures (into docs/img) and check the docs' relative links
	$(PYTHON) docs/make_plots.py --out-dir docs/img
	$(PYTHON) .ci/check_links.py README.md docs

lint:               ## ruff lint and the import-linter layer contracts (pyproject.toml)
	$(PYTHON) -m ruff check .
	lint-imports

format:             ## ruff format (rewrites files)
	$(PYTHON) -m ruff format .

tour:               ## the main job
	$(PYTHON) -m torchlc --out $(OUT)

ci:                 ## exactly what CI runs
	bash .ci/run

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis .ci/venv torchlc_tour.png
