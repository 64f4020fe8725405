# nflab — make demo | make test | make test-slow | make bench | make lint
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := infra/constraints.txt
TORCH_PIN := $(shell grep -E '^torch==' $(CONSTRAINTS))
STAMP := $(VENV)/.nflab-installed

.PHONY: demo test test-slow test-team bench lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade --quiet pip

# torch first, so that no other dependency pulls a second, larger torch build
$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nflab run pipelines/catalog/e2-toy-quick.yaml
	$(VENV)/bin/nflab leaderboard --html .nflab/leaderboard.html

test: $(STAMP)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-browser.sh
	$(PY) -m pytest -q -m "not slow" --timeout=900 --durations=25

test-slow: $(STAMP)
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-browser.sh
	$(PY) -m pytest -q -m slow --timeout=3600

test-team: $(STAMP)
	bash scripts/ensure-postgres.sh
	$(PY) -m pytest -q tests/team --timeout=900

bench: $(STAMP)
	$(PY) tests/benchmarks/run.py --out tests/benchmarks/RESULTS.md

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .nflab .pytest_cache
