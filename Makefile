# Two commands: `make demo` and `make test`. Each sets itself up on a fresh
# Debian machine: a .venv with this package, and sox + espeak-ng.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
RECIPE := egs/tedlium/s5_unspeech

.PHONY: demo test setup tools clean-demo

setup: $(VENV)/.installed tools

$(VENV)/.installed: setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# sox and espeak-ng make the demo corpus; installed when running as root.
tools:
	@missing=""; for t in sox espeak-ng; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sox libsox-fmt-all espeak-ng >/dev/null; \
	  else \
	    echo "ERROR (make): missing$$missing; install them, e.g. 'sudo apt-get install sox libsox-fmt-all espeak-ng'" >&2; exit 1; \
	  fi; \
	fi

# Stages 7-12 (GMM, Kaldi i-vectors, chain TDNNs, WERs) need KALDI_ROOT; without it the demo stops after 6.
demo: setup
	@[ -n "$$KALDI_ROOT" ] || echo "make demo: KALDI_ROOT not set: stages 0-6 only (export KALDI_ROOT for the chain TDNNs and WERs)"
	cd $(RECIPE) && ./run.sh --corpus demo --stop-stage $(if $(KALDI_ROOT),12,6)
	$(PY) local/summarize_demo.py $(RECIPE)

test: setup
	$(PY) -m pytest -q -rs --durations=8 tests   # -rs: why anything skipped; durations: the Kaldi tests ran

clean-demo:
	cd $(RECIPE) && rm -rf data exp fbank db
