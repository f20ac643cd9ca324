# toxic-service: the commands everyone uses. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := $(CURDIR)/.cache
# The toolchain's commands call each other by name (molecule runs ansible-config).
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Ansible and molecule keep their state here, not in the user's $HOME (CI hygiene).
export ANSIBLE_HOME := $(CACHE)/ansible/home
export ANSIBLE_LOCAL_TEMP := $(CACHE)/ansible/tmp
export TOXIC_ASSETS_CACHE := $(CACHE)
# The app's default data dir is $XDG_CACHE_HOME/toxic-service/default: `make assets` fills it.
export XDG_CACHE_HOME := $(CACHE)
STAMP := $(VENV)/.installed

.PHONY: help host-deps venv assets wheelhouse image up down demo lint test test-app test-molecule test-deploy \
        test-reliability test-firewalld test-tls bench soak clean perspective-clients

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | awk -F'\t' '{printf "  %-18s %s\n", $$1, $$2}'

# Debian packages and the Docker engine, the same script .ci/run calls: as root it installs
# and starts what is missing; as anyone else it says what to run as root.
host-deps: ## Debian packages (docker.io, debootstrap, chromium, ...) and a running Docker engine
	tools/host_deps.sh --for "make $(or $(MAKECMDGOALS),host-deps)"

$(STAMP): requirements.txt app/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q -e './app[keras,import,train,test]'
	touch $@

venv: $(STAMP) ## toolchain venv: ansible, molecule, fabric, linters, the app with its extras

assets: $(STAMP) ## demo model bundles and vocabularies into .cache/ (idempotent)
	$(BIN)/python tools/build_assets.py

wheelhouse: $(STAMP) ## the app wheel and every dependency for the target host
	tools/build_wheelhouse.sh

image: host-deps $(STAMP) ## the Debian 12 systemd test image, built offline (debootstrap)
	$(BIN)/python tools/local_host.py image

up: image ## start the local 1 GB test host (nginx on 127.0.0.1:8080, ssh on 127.0.0.1:2222)
	$(BIN)/python tools/local_host.py up

down: ## remove the local test host
	$(BIN)/python tools/local_host.py down

# The Perspective request make demo sends (Google's request shape: docs/perspective.md).
DEMO_ANALYZE := {"comment": {"text": "I will kill you, you idiot!"}, "requestedAttributes": {"TOXICITY": {}, "INSULT": {}}}

demo: host-deps assets wheelhouse up ## provision the local host with site.yml and score a real comment
	$(BIN)/ansible-playbook -i inventory/local site.yml
	@echo; echo '$$ curl -s -X POST http://127.0.0.1:8080/detect-toxic -H "Content-Type: application/json" \'
	@echo "    -d '{\"sequence\": \"I will kill you, you idiot!\"}'"
	@curl -sS --fail-with-body -X POST http://127.0.0.1:8080/detect-toxic -H 'Content-Type: application/json' \
	    -d '{"sequence": "I will kill you, you idiot!"}' | $(BIN)/python -m json.tool --sort-keys
	@echo; echo "The same comment through the Perspective API drop-in (docs/perspective.md; keys are off in this demo):"
	@echo '$$ curl -s -X POST "http://127.0.0.1:8080/v1alpha1/comments:analyze?key=demo" -H "Content-Type: application/json" \'
	@printf "    -d '%s'\n" '$(DEMO_ANALYZE)'
	@curl -sS --fail-with-body -X POST 'http://127.0.0.1:8080/v1alpha1/comments:analyze?key=demo' \
	    -H 'Content-Type: application/json' -d '$(DEMO_ANALYZE)' | $(BIN)/python -m json.tool
	@echo; echo "Open http://127.0.0.1:8080/ to type a comment and see its six scores."

lint: $(STAMP) ## ruff, yamllint, ansible-lint (production profile), vermin: host-side Python runs on 3.6
	$(BIN)/ruff check .
	$(BIN)/python tools/host_python_files.py check
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production

# Google's own client libraries for the real-client test (tests/integration/test_perspective_clients.py):
# a venv and a node_modules of the test's own under .cache; a second run only checks the pins.
perspective-clients: $(STAMP) ## Perspective's Python and Node client libraries into .cache (cached; prints what)
	$(BIN)/python tests/perspective_clients/install.py

test-app: assets perspective-clients ## pytest: app unit, integration (real gunicorn) and browser tests (assets: the real tox-block pickle test)
	TOXIC_TEST_NGINX=$$(tools/test_nginx.sh) $(BIN)/pytest -n 2 --dist loadfile tests/unit tests/integration tests/browser

test-molecule: host-deps assets wheelhouse ## molecule test -s local: create, converge, idempotence, verify, destroy
	HOME=$(CACHE)/home $(BIN)/molecule test -s local

test-firewalld: image ## molecule test -s firewalld: the firewall role's firewalld path, checked from a neighbour
	HOME=$(CACHE)/home $(BIN)/molecule test -s firewalld

test-deploy: host-deps assets wheelhouse ## fab deploy/rollback against a provisioned local host, under load; then TLS on it
	$(BIN)/pytest tests/deploy

test-reliability: host-deps assets wheelhouse ## the short reliability profile: load, faults, bad input, security
	TOXIC_RELIABILITY_PROFILE=short $(BIN)/pytest tests/reliability

test-tls: host-deps assets wheelhouse ## only the TLS checks of test-deploy (throwaway CA): versions, ciphers, unknown names, HSTS, redirect
	$(BIN)/pytest -v -s tests/deploy/test_tls.py

test: host-deps lint test-app test-molecule test-firewalld test-deploy test-reliability ## everything that proves it (what .ci/run calls)

soak: host-deps assets wheelhouse ## the full reliability run (10 minutes of load); figures into docs/reliability.md
	TOXIC_RELIABILITY_PROFILE=full $(BIN)/pytest tests/reliability

bench: host-deps assets ## every benchmark under bench/, results into docs/benchmarks.md and its plots
	$(BIN)/python -m bench
	$(BIN)/python tools/plot_benchmarks.py

clean: down ## remove the local host and build outputs (keeps downloaded caches)
	rm -rf app/build app/dist artifacts
