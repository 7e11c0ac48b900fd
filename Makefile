# carealign: `make demo` runs the main job on the embedded model; `make test` runs the test suite.
# Both create the virtualenv and install everything they need first.

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
CAREALIGN  := $(VENV)/bin/carealign
EXTRAS     ?= local,train,postgres,web,ray,dev
# llama.cpp is compiled once per machine (portable x86-64 builds, see scripts/): llama-cpp-python's
# wheel into WHEELHOUSE, and llama.cpp's native server (the embedded model's default) into
# SERVER_CACHE/llama-server-$(LLAMA_VERSION)/bin/llama-server (agents/local_server.py looks there)
WHEELHOUSE   ?= $(HOME)/.cache/carealign/wheels
SERVER_CACHE ?= $(HOME)/.cache/carealign
LLAMA_VERSION := 0.3.36

.PHONY: install demo test bench lint layers clean llama-wheel llama-server

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile scripts/build-llama-wheel.sh scripts/build-llama-server.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first: 2.13.0 is a CPU wheel on this machine's disk; left to the resolver, pip would
	# download a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	WHEELHOUSE=$(WHEELHOUSE) PY=$(PY) scripts/build-llama-wheel.sh $(LLAMA_VERSION)
	$(PIP) install -q --find-links $(WHEELHOUSE) "llama-cpp-python[server]==$(LLAMA_VERSION)"
	$(PIP) install -q --find-links $(WHEELHOUSE) -e ".[$(EXTRAS)]"
	SERVER_CACHE=$(SERVER_CACHE) PY=$(PY) scripts/build-llama-server.sh $(LLAMA_VERSION)
	touch $@

llama-wheel:
	WHEELHOUSE=$(WHEELHOUSE) PY=$(PY) scripts/build-llama-wheel.sh $(LLAMA_VERSION)

llama-server:
	SERVER_CACHE=$(SERVER_CACHE) PY=$(PY) scripts/build-llama-server.sh $(LLAMA_VERSION)

demo: install
	mkdir -p out
	$(CAREALIGN) --config examples/demo.toml generate examples/medical_questions.jsonl --dataset demo-medical
	$(CAREALIGN) --config examples/demo.toml db export --out out/demo_pairs.jsonl
	$(CAREALIGN) --config examples/demo.toml runs list --limit 3

test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

# the import layering of pyproject.toml's [tool.importlinter] (also run by `make test`)
layers: install
	$(VENV)/bin/lint-imports --no-cache

bench: install
	@for script in tests/perf/bench_*.py; do \
		echo "== $$script" >&2; \
		$(PY) $$script || exit 1; \
	done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) out .pytest_cache carealign-demo.db*
