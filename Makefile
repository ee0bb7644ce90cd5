# Two commands on a fresh machine: `make demo` and `make test`.  Each creates .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgecnn-installed
# MediaPipe Tasks, the on-device client the exported .tflite files are checked with, lives in a
# venv of its own (its wheel brings a second OpenCV); its tests skip if it cannot be installed.
MP_VENV ?= .venv-mp
MP_STAMP := $(MP_VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(MP_STAMP):
	-( test -x $(MP_VENV)/bin/python || $(PYTHON) -m venv $(MP_VENV) ) && \
	  $(MP_VENV)/bin/python -m pip install --quiet mediapipe==1.2.2 && touch $(MP_STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgecnn demo --out runs/demo

test: $(STAMP) $(MP_STAMP)
	$(PY) -m ruff check .
	mp=$(abspath $(MP_VENV))/bin/python; test -f $(MP_STAMP) || mp=; \
	  EDGECNN_MEDIAPIPE_PYTHON=$$mp $(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf runs/demo .pytest_cache build
