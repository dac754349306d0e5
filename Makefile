# dualstack-rollout: set-up and test entry points.
# `make test` on a fresh Debian machine (python3 + apt) installs everything it
# needs: the controller virtualenv, a Docker engine, the test host images.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Keep Molecule and Ansible caches inside the checkout.
export ANSIBLE_HOME := $(CURDIR)/.ansible
export MOLECULE_GLOB := molecule/*/molecule.yml

# Molecule scenarios run by `make test`, in two lanes side by side (each
# lane in order; about the same time each; every scenario has its own
# containers and network). LANES="a b c" runs them one after another. Those
# in LEGACY_SCENARIOS run under the ansible-core 2.16 controller
# (.venv-legacy), the others under the newest. Each scenario's output:
# logs/molecule/SCENARIO.log.
LANES ?= "fleet contract baseline" "legacy haproxy default"
SCENARIOS := baseline default contract fleet haproxy legacy
LEGACY_SCENARIOS := legacy
LEGACY_VENV ?= .venv-legacy

.PHONY: help venv docker tools images lint unit sanity molecule test scenario clean demo demo-clean audit

help:
	@echo "make demo              set up everything, start a sandbox fleet, audit, roll out, audit again"
	@echo "                       (MITOGEN=1: with Mitogen's strategy)"
	@echo "make demo-clean        remove the sandbox fleet's containers and network"
	@echo "make audit             read-only audit of the sandbox fleet (or INVENTORY=path)"
	@echo "make test              set up everything, then lint, unit tests and every Molecule scenario"
	@echo "make scenario S=NAME   run one Molecule scenario (create, converge, verify, destroy)"
	@echo "make images            build the Debian 11/12/13 test host images (only when the recipe changed)"
	@echo "make lint | unit       yamllint + ansible-lint | pytest unit tests of the plugins"
	@echo "make sanity            ansible-test sanity on the built collection (and compile/import on Python 2.7, 3.6)"

venv: $(VENV)/.installed $(LEGACY_VENV)/.installed

$(VENV)/.installed: requirements.txt
	@echo "== controller virtualenv ($(VENV)) from requirements.txt"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(LEGACY_VENV)/.installed: requirements-legacy.txt
	@echo "== legacy controller virtualenv ($(LEGACY_VENV), ansible-core 2.16) from requirements-legacy.txt"
	test -x $(LEGACY_VENV)/bin/python || $(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-legacy.txt
	touch $@

docker:
	@echo "== Docker engine"
	scripts/ensure-docker.sh

tools:
	@echo "== tools the unit tests hand their output to (nginx -t, haproxy -c and its runtime API)"
	scripts/ensure-test-tools.sh

images: docker
	@echo "== test host images"
	scripts/build-images.sh

lint: venv
	@echo "== yamllint"
	yamllint --strict .
	@echo "== ansible-lint (production profile)"
	ansible-lint

unit: venv tools
	@echo "== unit tests"
	pytest --timeout 600

# The collection as ansible-galaxy builds it, judged by ansible-core's own
# sanity tests; the hosts' Pythons (2.7, 3.6) from this machine's pyenv.
sanity: venv
	DSR_BIN=$(BIN) DSR_LEGACY_BIN=$(CURDIR)/$(LEGACY_VENV)/bin scripts/sanity.sh

# Without a CPython 3.6 build on this machine (pyenv) there is no 12-py36
# image: the legacy scenario's Python 3.6 host then runs the Python 2.7 image
# and its Python 3.6 checks skip, said here and by the tests.
PY36_IMAGE := dualstack-rollout/debian:12-py36
py36-fallback = $(shell docker image inspect $(PY36_IMAGE) >/dev/null 2>&1 || \
  echo DSR_PY36_IMAGE=dualstack-rollout/debian:11-py27 DSR_PY36_PYTHON=/usr/bin/python2.7)
molecule: venv images
	@fallback="$(py36-fallback)"; [ -z "$$fallback" ] || \
	  echo "== NOTE: no image $(PY36_IMAGE) (no CPython 3.6 in this machine's pyenv): the legacy scenario's Python 3.6 host is SKIPPED ($$fallback)"; \
	start=$$(date +%s); \
	DSR_BIN=$(BIN) DSR_LEGACY_BIN=$(CURDIR)/$(LEGACY_VENV)/bin DSR_LEGACY_SCENARIOS="$(LEGACY_SCENARIOS)" \
	  DSR_SCENARIO_ENV="$$fallback" scripts/run-scenarios.sh logs/molecule $(LANES); \
	echo "== molecule scenarios took $$(( $$(date +%s) - start )) s"

scenario: venv images
	bin=$(BIN); case " $(LEGACY_SCENARIOS) " in *" $(S) "*) bin=$(CURDIR)/$(LEGACY_VENV)/bin;; esac; \
	  env $(py36-fallback) PATH=$$bin:$$PATH $$bin/molecule test -s $(S)

test: lint unit sanity molecule
	@echo "== all tests passed"

clean:
	-for s in $(SCENARIOS); do molecule destroy -s $$s; done
	rm -rf $(LEGACY_VENV)
	rm -rf .cache .ansible .pytest_cache

demo: venv images
	$(if $(MITOGEN),ANSIBLE_STRATEGY=mitogen_linear )scripts/demo.sh

demo-clean: venv docker
	ansible-playbook sandbox/fleet-down.yml

audit: venv
	ansible-playbook $(if $(INVENTORY),-i $(INVENTORY)) audit.yml
