# lrfused developer entry points. Everything runs in an isolated virtual environment (.venv).
#   make bench   the main job: lrfused against eager torch (benchmarks/README.md)
#   make test    the test suite
#   make cuda-check  the CUDA flavour built against a CUDA build of torch, loaded, and the suite run on it
#                    (no GPU needed; what CI runs besides `make test`)
#   make gpu-check   on a machine with a GPU: build for it, CUDA tests, compute-sanitizer, GPU benchmark
# TORCH=... picks the torch to install (default torch==2.13.0, the CPU build on our machines);
# SYSTEM_TORCH=1 reuses the torch already installed in the Python that runs make instead.
# CUDA_TORCH=... picks the CUDA build of torch for cuda-check (default torch==2.14.1, CUDA 13.0).
PYTHON ?= python3
TORCH ?= torch==2.13.0
CUDA_TORCH ?= torch==2.14.1
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lrfused-deps
BUILD_STAMP := $(VENV)/.lrfused-build
CUDA_VENV := .venv-cuda
CUDA_STAMP := $(CUDA_VENV)/.lrfused-deps
SOURCES := $(shell find csrc -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu') setup.py
NVCC ?= nvcc

.PHONY: all venv install test test-all bench bench-quick gallery nvcc-check cuda-check gpu-check clean

all: install

# The development dependencies: pyproject.toml's `dev` extra, the one list (tools/dev_deps.py reads it; a
# failure to read it stops the recipe instead of installing torch alone).
DEV_DEPS = deps="$$($(PYTHON) tools/dev_deps.py)" &&
# The oracle libraries of the schedule tests, after torch (pyproject.toml says why the flags). $(1): the python.
ORACLES = oracles="$$($(PYTHON) tools/dev_deps.py oracles)" && nodeps="$$($(PYTHON) tools/dev_deps.py oracles-no-deps)" && \
	DS_BUILD_OPS=0 $(1) -m pip install -q --no-build-isolation $$oracles && $(1) -m pip install -q --no-deps $$nodeps

$(STAMP): pyproject.toml
ifeq ($(SYSTEM_TORCH),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(DEV_DEPS) $(PY) -m pip install -q $$deps
else
	$(PYTHON) -m venv $(VENV)
	$(DEV_DEPS) $(PY) -m pip install -q "$(TORCH)" $$deps
endif
	$(call ORACLES,$(PY))
	touch $(STAMP)

$(CUDA_STAMP): pyproject.toml
	$(PYTHON) -m venv $(CUDA_VENV)
	$(DEV_DEPS) $(CUDA_VENV)/bin/python -m pip install -q "$(CUDA_TORCH)" $$deps
	$(call ORACLES,$(CUDA_VENV)/bin/python)
	touch $(CUDA_STAMP)

venv: $(STAMP)

$(BUILD_STAMP): $(STAMP) $(SOURCES)
	MAX_JOBS=$${MAX_JOBS:-$$(nproc)} $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	touch $(BUILD_STAMP)

install: $(BUILD_STAMP)

test: install
	$(PY) -m pytest -q tests

# Randomized parity with many more examples, and the slow tests.
test-all: install
	LRFUSED_HYPOTHESIS_EXAMPLES=2000 $(PY) -m pytest -q --runslow tests

bench: install
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.memory

bench-quick: install
	$(PY) -m benchmarks.run --quick

gallery: install
	$(PY) -m lrfused.gallery benchmarks/results/schedule_gallery.png

# Compile-check the CUDA kernels with plain nvcc and no torch headers (the kernels are torch-free), for
# the architectures tools/cuda_build.py names.
nvcc-check:
	@set -e; archs="$$($(PYTHON) tools/cuda_build.py gencode)"; for f in $$(find csrc/cuda -name '*.cu'); do \
	  echo "nvcc $$f"; \
	  $(NVCC) -std=c++17 -O3 -fmad=false -Icsrc $$archs -c $$f -o /dev/null; \
	done

# Build the CUDA flavour (LRFUSED_CUDA=1) against a CUDA build of torch in $(CUDA_VENV), in a copy of the
# tree under build/cuda-check (the CPU build in the tree stays as it is), check through the dispatcher that
# every op has a CUDA kernel, and run the test suite on that build (its CUDA tests skip without a GPU).
cuda-check: $(CUDA_STAMP)
	bash tools/cuda_check.sh $(CUDA_VENV)/bin/python

# On a machine with a GPU, CUDA torch, nvcc and pytest (no network): everything the GPU can prove, in one
# command of at most ~9 minutes; logs and summary.json go to $$OUT (default build/gpu-check).
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf build lrfused/*.so $(BUILD_STAMP)
