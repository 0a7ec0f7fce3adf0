# `make bench`: set up .venv and run the main job; `make test`: set up .venv and run the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: bench test
bench: $(STAMP)
	$(VENV)/bin/lrbench bench

test: $(STAMP)
	$(PY) -m pytest
