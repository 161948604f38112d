# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   - install into .venv and run the pipeline on the offline demo photos
#   make test   - install into .venv (with test extras) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= results/demo

.PHONY: setup demo test bench clean-demo

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

bench: setup
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf $(DEMO)
