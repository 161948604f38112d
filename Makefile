# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - install into .venv and run the pipeline on the offline demo photos
#   make test   - install into .venv (with test extras) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= results/demo

CLIP_VENV ?= .venv-clip

.PHONY: setup demo test lint test-clip bench clean-demo

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: setup
	$(PY) -m facesets demo-setup $(DEMO)
	$(VENV)/bin/snakemake --configfile $(DEMO)/config.yaml --cores all

test: setup
	$(PY) -m pytest -q

# Snakemake's workflow linter must report nothing (it parses the Snakefile only: no job runs, nothing is written)
LINT_CONFIG ?= $(VENV)/lint-config.yaml
lint: setup
	printf 'results: %s\nsources: [{name: lint, path: %s}]\n' "$(VENV)/lint-results" "$(CURDIR)/tests" > $(LINT_CONFIG)
	$(VENV)/bin/snakemake --lint --configfile $(LINT_CONFIG) --cores 1

# The optional CLIP occlusion filter in its own env (torch + torchvision + open_clip: several GB),
# then the test that runs the real open_clip path with a randomly initialised model.
test-clip: setup
	$(PYTHON) -m venv $(CLIP_VENV)
	$(CLIP_VENV)/bin/python -m pip install -q -e '.[clip,test]'
	$(CLIP_VENV)/bin/python -m pytest -q tests/test_curation.py -k clip

bench: setup
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf $(DEMO)
