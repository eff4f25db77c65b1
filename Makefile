# Thin targets; each sets itself up idempotently (a fresh machine needs only python3 and make).
PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup browser test test-slow demo cases bench bench-realdata lint clean

# Each stage is announced before it starts; pip lists the packages of the big install as it goes.
$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml
	@echo "setup 1/4: virtual environment $(VENV) (from $(PY))"
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	@echo "setup 2/4: upgrading pip"
	@$(PYTHON) -m pip install -q --upgrade pip
	@echo "setup 3/4: the pinned packages of requirements-dev.txt (container, training, tests: torch and the stack;" \
	  "about 5 minutes and 7 GB on a first run)"
	@$(PYTHON) -m pip install --progress-bar off -r requirements-dev.txt
	@echo "setup 4/4: this project, editable (so \`.venv/bin/python -m train\` works from any folder)"
	@$(PYTHON) -m pip install -q --no-deps --editable .
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "setup: done ($(VENV))"

setup: $(STAMP)

# Debian's chromium, for the test that opens the HTML report (test/test_report_html.py). Quick when installed;
# installs with apt-get otherwise (CI runs as root; elsewhere through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "browser: installing Debian's chromium with apt-get (test/test_report_html.py opens the report in it;" \
	    "a minute or two)"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && \
	  echo "browser: chromium installed"; }

test: setup browser
	$(PYTHON) -m pytest

# The slow tests, then the property-based fault suite with 300 examples a property (CI runs 20).
test-slow: setup
	$(PYTHON) -m pytest -m slow
	CHIMERA_FAULTS=deep $(PYTHON) -m pytest test/test_fault_properties.py

# Sample cases in the grand-challenge layout (test/input/<case>/inputs.json), not committed.
cases: setup
	$(PYTHON) -m chimera_surv.make_cases --layout gc --task 1 2 3 --n 2 --out test/input --seed 0

# Train small bundles on synthetic cohorts (with the HTML report of each), then run inference.py on held-out
# synthetic cases and on the sample cases (--explain: attention heatmaps). Per-case rows: add --rows.
demo: setup
	$(PYTHON) -m train.demo --out model --cases runs/demo/cases --sample-cases test/input

bench: setup
	$(PYTHON) benchmarks/wsi_throughput.py
	$(PYTHON) benchmarks/models_cpu.py
	$(PYTHON) benchmarks/input_guards.py
	$(PYTHON) benchmarks/deadline.py
	$(PYTHON) benchmarks/table_route.py

# SurvSet cohorts through `python -m train` (model: auto) against scikit-survival anchors on the same folds.
# realdata.py rewrites realdata.md's top; --aggregate adds the issue-23 section back from the stored per-cohort results
bench-realdata: setup
	$(PYTHON) benchmarks/realdata.py
	$(PYTHON) benchmarks/realdata_confirm.py --aggregate

lint: setup
	$(PYTHON) -m ruff check .
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/shellcheck do_build.sh do_test.sh do_save.sh .ci/run

clean:
	rm -rf test/input .pytest_cache
