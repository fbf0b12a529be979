# trustgrpo: `make demo` and `make test` work on a fresh machine (Python >= 3.10).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Parallel test workers must be single-threaded: two PyTorch processes on 2 cores otherwise
# slow each other down 4-20x.
TEST_WORKERS ?= 2

.PHONY: install system-deps demo test test-slow bench lint format clean docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned through constraints.txt (the CPU build on local disk), never in metadata
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,postgres,review,report,trl,bench,box2d]"
	touch $(STAMP)

install: $(STAMP) system-deps

# Operating-system packages, installed where we can (root with apt): bubblewrap for the
# sandbox, chromium for the browser tests of the review page and report, poppler-utils for PDF
# checks. Without them the sandbox reports weaker isolation and those tests say why they skip.
system-deps:
	@missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pdftoppm >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	test -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || missing="$$missing fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    (apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1)) \
	     || echo "warning: could not install$$missing"; \
	  else echo "note: missing system packages:$$missing (see README)"; fi; \
	fi

demo: install
	$(BIN)/trustgrpo demo

test: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) -q

test-slow: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --runslow -m slow

bench: install
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

docs: install
	$(BIN)/python tools/update_readme.py
