# The two commands of the README: `make run` (the main job) and `make test`.
# Both create .venv with python -m venv + pip when it is missing or stale.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.optimlab-installed

# The real data sets live in ../shared/data beside a fresh clone; pass them on
# unless the caller already chose a data directory.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(origin OPTIMLAB_DATA), undefined)
ifneq ($(wildcard $(SHARED_DATA)),)
export OPTIMLAB_DATA := $(SHARED_DATA)
endif
endif

PRESET ?= quick

.PHONY: run test venv lint clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The report is written even when some runs failed (it lists them); make still
# exits with the sweep's status so that failures are not missed.
run: $(STAMP)
	status=0; $(PY) -m experiments.cli run all --preset $(PRESET) || status=$$?; \
	$(PY) -m experiments.cli report || exit $$?; exit $$status

test: $(STAMP) browser
	$(PY) -m pytest -q

# Headless chromium for the report's browser test (Debian's package).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
