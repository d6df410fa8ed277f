# Two targets do all set-up on a fresh machine:  `make run`  and  `make test`.
# TORCH: which torch the venv gets first. torch==2.13.0 is a CUDA build on a GPU machine and the CPU build
# where a local CPU wheel is on pip's find-links; override e.g. TORCH="torch==2.13.0 --index-url <your index>".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install run test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: install
	$(BIN)/lmpipe run

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check pipelines tasks flows deployments tests bench

clean:
	rm -rf $(VENV) .pytest_cache
