# The two commands: `make demo` and `make test`. Both set up .venv first.
#
# torch: where the system python can already import torch (a GPU box), the venv sees it
# (--system-site-packages) and it is kept; otherwise TORCH_SPEC is installed first, a CPU
# build that comes from this machine's disk in seconds (a bare "torch" would pull several
# GB of CUDA wheels).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= auto
STAMP := $(VENV)/.infertune-installed
# The real models' weights (SmolLM2-135M GGUF, all-MiniLM-L6-v2 safetensors), fetched once into
# the model cache (INFERTUNE_MODELS, else ~/.cache/infertune/models): tests and the demo need them.
MODELS_STAMP := $(VENV)/.infertune-models

.PHONY: demo test install models clean gpu-bundle gpu-rehearsal

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
	    echo "torch is importable by $(PYTHON): keeping it (venv with system site-packages)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else \
	    $(PYTHON) -m venv $(VENV); \
	  fi; \
	fi
	@$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	@# Offline (a lent GPU machine): the carried wheels of make gpu-bundle, no build isolation
	@# (setuptools comes from the image instead of the network).
	$(PY) -m pip install --quiet -e ".[dev]" || { [ -d .whl ] && echo "no index: installing from .whl/" && \
	  $(PY) -m pip install --quiet --no-index --find-links .whl --no-build-isolation -e ".[dev]"; }
	@touch $(STAMP)

install: $(STAMP)

# Without network access the fetch fails: the tests that need a model then skip (fail under
# INFERTUNE_REQUIRE_MODELS=1, as on CI), and the next make tries again (no stamp).
$(MODELS_STAMP): $(STAMP)
	@if $(VENV)/bin/infertune models fetch smollm2-135m minilm-l6; then touch $(MODELS_STAMP); \
	else echo "warning: could not fetch the built-in models; the tests that need them will skip"; fi

models: $(MODELS_STAMP)

# The main job end to end on this machine's device (infertune/demo.py): tune the built-in
# decoder's kernels, generate with and without the tuned database, an embedding job, a
# kernel profile, and runs/demo/report.html. Without a GPU: small sizes, CPU figures.
demo: $(STAMP) $(MODELS_STAMP)
	$(VENV)/bin/infertune demo --out runs/demo

test: $(STAMP) $(MODELS_STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

# What a lent GPU machine (no network) needs beside the tree: the wheels its image lacks (.whl/,
# computed from pyproject against bench/device/image.txt; fails above 40 MiB) and MiniLM's files
# without its weights (.kitmodels/). Carry both; run bench/device/run.sh there (README: On a GPU).
gpu-bundle: $(STAMP) $(MODELS_STAMP)
	$(PY) -m bench.device.bundle --dest .whl
	$(PY) -m bench.device.models pack minilm-l6 .kitmodels

# The kit at CPU sizes on the GPU image's versions (Python 3.12, torch 2.11, triton 3.6,
# transformers 5.17), offline, from the bundle: bench/device/rehearsal.sh. .ci/run calls it.
gpu-rehearsal: gpu-bundle
	KIT_PYTHON=$(PY) bash bench/device/rehearsal.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
