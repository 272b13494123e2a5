# Two commands do all the set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# Airflow's home and folders live inside the checkout (git-ignored var/), for demo and UI alike. Every target
# here is development mode: local stand-ins for services nobody configured (pipelines/settings.py).
AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/var/airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins AIRFLOW__CORE__LOAD_EXAMPLES=False
export PIPELINES_LOCAL_SERVICES := 1

.PHONY: install demo test airflow lint bench serve clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## everything end to end on embedded services, through Airflow
	$(AIRFLOW_ENV) $(PY) -m pipelines demo $(DEMO_ARGS)

test: $(STAMP)  ## the whole test suite (pytest's "no tests collected" is not a failure)
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

airflow: $(STAMP)  ## Airflow UI on http://localhost:8080 with every DAG, local services started alongside
	$(AIRFLOW_ENV) AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True \
		PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pipelines services run --airflow-metadata -- airflow standalone

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/retention_bench.py

serve: $(STAMP)  ## the recommendations API on http://localhost:8000 (docs at /docs)
	$(PY) -m uvicorn pipelines.recs.api:app --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

clean:
	-$(PY) -m pipelines services stop
	rm -rf var
