# lrfused developer entry points. Everything runs in an isolated virtual environment (.venv).
#   make bench   the main job: lrfused against eager torch (benchmarks/README.md)
#   make test    the test suite
# TORCH=... picks the torch to install (default torch==2.13.0, the CPU build on our machines);
# SYSTEM_TORCH=1 reuses the torch already installed in the Python that runs make instead.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lrfused-deps
BUILD_STAMP := $(VENV)/.lrfused-build
SOURCES := $(shell find csrc -name '*.h' -o -name '*.cuh' -o -name '*.cpp' -o -name '*.cu') setup.py
NVCC ?= nvcc
NVCC_ARCHS := -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90

.PHONY: all venv install test test-all bench bench-quick gallery nvcc-check clean

all: install

$(STAMP):
ifeq ($(SYSTEM_TORCH),1)
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q numpy pybind11 ninja pytest hypothesis matplotlib setuptools wheel transformers accelerate lightning
else
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)" numpy pybind11 ninja pytest hypothesis matplotlib setuptools wheel transformers accelerate lightning
endif
	touch $(STAMP)

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

bench-quick: install
	$(PY) -m benchmarks.run --quick

gallery: install
	$(PY) -m lrfused.gallery benchmarks/results/schedule_gallery.png

# Compile-check the CUDA kernels with plain nvcc (no CUDA build of torch needed): DESIGN.md principle 2.
nvcc-check:
	@set -e; for f in $$(find csrc/cuda -name '*.cu'); do \
	  echo "nvcc $$f"; \
	  $(NVCC) -std=c++17 -O3 -Icsrc $(NVCC_ARCHS) -c $$f -o /dev/null; \
	done

clean:
	rm -rf build lrfused/*.so $(BUILD_STAMP)
