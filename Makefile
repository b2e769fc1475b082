# Two entry points (README Quick start): `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint report clean-results slurm-up slurm-down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Snakemake applies the workflow profile profiles/default by itself (no --profile needed)
demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)

report: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --report results/report.html

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check segcore medseg rs tests bench scripts
	$(BIN)/ruff format --check segcore medseg rs tests bench scripts
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/lint_workflow.py  # snakemake --lint but one lint (the script says why)

clean-results:
	rm -rf results .snakemake

# A single-node SLURM cluster on this machine (root, Debian) for tests/test_slurm.py, and the
# executor plugin in $(VENV)/slurm-plugin: outside the venv's own path, because snakemake loads
# every installed executor plugin at start and this one probes scontrol, which local runs
# (make demo) must not need. tests/test_slurm.py puts it on PYTHONPATH for its SLURM run.
SLURM_PLUGIN := $(VENV)/slurm-plugin/.installed-stamp

$(SLURM_PLUGIN): $(STAMP)
	$(BIN)/python -m pip install --quiet --upgrade --no-deps --target $(VENV)/slurm-plugin \
		'snakemake-executor-plugin-slurm>=2.0,<3' 'snakemake-executor-plugin-slurm-jobstep>=0.6,<1' 'throttler>=1.2,<2'
	touch $(SLURM_PLUGIN)

slurm-up: $(SLURM_PLUGIN)
	bash scripts/slurm/up.sh

slurm-down:
	bash scripts/slurm/down.sh
