# Two entry points (README Quick start): `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint report clean-results

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --profile workflows/profiles/local --cores $(CORES)

report: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --profile workflows/profiles/local --cores $(CORES) --report results/report.html

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check segcore medseg rs tests bench
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
