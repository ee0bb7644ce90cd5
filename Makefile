# Two commands on a fresh machine: `make demo` and `make test`.  Each creates .venv if needed,
# with the exact versions of the committed lock (uv.lock); `make lock` regenerates it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgecnn-installed
# uv, pinned, in a venv of its own: it installs the lock (`uv sync --frozen`) and rewrites it.
UV_VERSION := 0.13.9
UV_VENV ?= .venv-uv
UV := $(UV_VENV)/bin/uv
# MediaPipe Tasks, the on-device client the exported .tflite files are checked with, lives in a
# venv of its own (its wheel brings a second OpenCV), from its own lock; its tests skip if it
# cannot be installed.
MP_VENV ?= .venv-mp
MP_STAMP := $(MP_VENV)/.installed

.PHONY: demo test test-avx2 test-latest test-oldest test-python lint lock pi-check clean

$(UV):
	test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --quiet --frozen --extra dev --python $(PYTHON)
	touch $(STAMP)

$(MP_STAMP): requirements/mediapipe.txt $(UV)
	-( test -x $(MP_VENV)/bin/python || $(UV) venv --quiet $(MP_VENV) --python $(PYTHON) ) && \
	  VIRTUAL_ENV=$(abspath $(MP_VENV)) $(UV) pip sync --quiet --require-hashes \
	    requirements/mediapipe.txt && touch $(MP_STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgecnn demo --out runs/demo

# pytest, told where the MediaPipe client's venv is when it could be installed
PYTEST = mp=$(abspath $(MP_VENV))/bin/python; test -f $(MP_STAMP) || mp=; \
	  env EDGECNN_MEDIAPIPE_PYTHON=$$mp

test: $(STAMP) $(MP_STAMP) lint
	$(PYTEST) $(PY) -m pytest -q

# The suite with oneDNN, OpenCV and numpy held to the kernels of an AVX2-only CPU: a CPU with
# AVX-512 then runs what one without it does (tools/avx2_only.py; on an AVX2 CPU, `make test`).
test-avx2: $(STAMP) $(MP_STAMP)
	$(PYTEST) $$($(PY) tools/avx2_only.py) $(PY) -m pytest -q

# The suite against the newest releases the ranges allow (test-latest) or the oldest, the
# floors pyproject.toml promises (test-oldest), each in a venv of its own.
test-latest: RESOLUTION := highest
test-oldest: RESOLUTION := lowest-direct
test-latest test-oldest: $(UV)
	venv=$(abspath .venv-$(subst test-,,$@)); \
	  (test -x $$venv/bin/python || $(UV) venv --quiet $$venv --python $(PYTHON)) && \
	  VIRTUAL_ENV=$$venv $(UV) pip install --quiet --upgrade --resolution $(RESOLUTION) \
	    -e ".[dev]" && \
	  VIRTUAL_ENV=$$venv $(UV) pip list 2>/dev/null | \
	    grep -Ei '^(numpy|opencv-python-headless|tensorflow|keras|ai-edge-litert|onnxruntime|onnx|tf2onnx) ' && \
	  $$venv/bin/python -m pytest -q

# The suite from a clean clone of HEAD on Debian Trixie's Python 3.13, the newest Python
# pyproject.toml allows, in a chroot (root only; tools/python_check.py says how).
test-python: $(STAMP)
	$(PY) tools/python_check.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Rewrites uv.lock (every Python 3.10-3.13, every platform) and the MediaPipe client's lock
# with the newest versions the ranges allow.
lock: $(UV)
	$(UV) lock --upgrade
	$(UV) pip compile --quiet --universal --python-version 3.10 --generate-hashes \
	  --upgrade requirements/mediapipe.in -o requirements/mediapipe.txt

# The device runtime on arm64 Raspberry Pi OS userlands (Bookworm, Trixie) under qemu user-mode
# emulation, compared with x86-64 on the same images (tools/pi_check.py says how).  pip fetches
# the arm64 wheels: uv's .venv has none, so the pip of uv's own venv does.
pi-check: $(STAMP) $(UV)
	EDGECNN_PIP_PYTHON=$(abspath $(UV_VENV))/bin/python $(PY) tools/pi_check.py

clean:
	rm -rf runs/demo .pytest_cache build
