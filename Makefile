# Shortcuts; the README's two commands work without make.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.lock -e .
	touch $@

.PHONY: run test lint bench lock
run: $(VENV)/.installed
	$(VENV)/bin/livedash run

test: $(VENV)/.installed
	$(VENV)/bin/pytest

# The same list .ci/run runs.
lint: $(VENV)/.installed
	VENV=$(VENV) bash scripts/lint.sh

bench: $(VENV)/.installed
	$(PY) -m bench.run

lock:
	$(VENV)/bin/uv pip compile pyproject.toml -o requirements.lock --python-version 3.11 -q
	$(VENV)/bin/uv pip compile pyproject.toml --extra test -o requirements-dev.lock --python-version 3.11 -q
