# tailguard: `make demo` and `make test` set everything up on a fresh Debian machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORE  := $(VENV)/.core
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages: the human corpus, the browser the report test opens, and the
# seccomp library the code sandbox filters system calls with. The demo needs the corpus.
DEBS  := fortunes wordnet-base chromium libseccomp2
DEMO_DEBS := fortunes

.PHONY: setup sysdeps demo-sysdeps test lint demo bench clean

setup: sysdeps $(STAMP)

# Install the Debian packages of $(1) that are missing.
install_debs = missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

sysdeps:
	@$(call install_debs,$(DEBS))

demo-sysdeps:
	@$(call install_debs,$(DEMO_DEBS))

# The demo: tailguard and its own dependencies, nothing else (no test, Ray or HF extras).
$(CORE): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { \
	  $(SUDO) apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $(CORE)

# The MLflow tracking server and UI (full mlflow) in their own virtualenv: mlflow 3.17 caps
# pyarrow below 26, and tailguard's record ids need 26 (NFC, apache/arrow#51225). The
# tracking tests start this server; tailguard logs to it with the client (mlflow-skinny).
MLFLOW_VENV := .venv-mlflow
MLFLOW      := $(MLFLOW_VENV)/bin/mlflow

$(MLFLOW):
	python3 -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install -q 'mlflow>=2.10'

$(STAMP): $(CORE) $(MLFLOW)
	$(PY) -m pip install -q -e '.[test,hf,ray,mlflow]'
	@# The PyTorch adapters and the real sentence model ([embed]) are tested with the CPU
	@# build of torch when this machine carries its wheel (a plain `pip install torch`
	@# would fetch a multi-GB CUDA build).
	@w=$$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -1); \
	if [ -n "$$w" ]; then $(PY) -m pip install -q "$$w" && $(PY) -m pip install -q -e '.[embed,torch]'; fi
	@touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

test: lint
	$(VENV)/bin/pytest -n 2 --dist loadfile

demo: demo-sysdeps $(CORE)
	$(VENV)/bin/tailguard demo

bench: setup
	for b in bench/[!_]*.py; do $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) .pytest_cache .ruff_cache .hypothesis runs report.html
