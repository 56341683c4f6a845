# The two commands of the README: `make run` (the whole pipeline on the
# embedded default corpus) and `make test`. Both create .venv and install the
# project on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/.prefect

.PHONY: run test reproduce status dashboard bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

run: $(INSTALLED)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/motionmasks run

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n auto --dist loadfile

# CI's results check: run the pipeline, then compare with the committed metrics, plots and
# dvc.lock (tolerances in motionmasks/reproduce.py). Fails, naming each difference, if not reproduced.
reproduce: run
	$(BIN)/motionmasks verify

status: $(INSTALLED)
	$(BIN)/motionmasks status

dashboard: $(INSTALLED)
	$(BIN)/motionmasks dashboard

clean:
	rm -rf data metrics plots .prefect
