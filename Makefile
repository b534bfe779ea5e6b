# `make run` and `make test` work from a fresh clone: they create .venv from the requirements.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean-venv

$(STAMP): requirements.txt requirements-dev.txt requirements-optional.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-optional.txt
	touch $(STAMP)

run: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py --host 127.0.0.1 --port 7860

test: $(STAMP)
	$(VENV)/bin/ruff check .
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m pytest -q

bench: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
