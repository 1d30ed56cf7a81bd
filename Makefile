# Fresh-machine entry points (the README's two commands): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck bench clean
$(BIN)/edgeseg: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,nvml]'
	touch $(BIN)/edgeseg

setup: $(BIN)/edgeseg

demo: setup
	$(BIN)/edgeseg demo --out outputs

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check edgeseg tests benchmarks
	# TensorRT types come from the vendored, corrected stubs in typings/ (pyproject mypy_path)
	$(BIN)/mypy edgeseg/deploy edgeseg/runtime edgeseg/artifacts edgeseg/train edgeseg/models edgeseg/doctor.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
