# Fresh-machine entry points (the README's two commands): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev demo test lint typecheck bench clean
# setup: what `edgeseg` and the demo need (torch, edgeseg, matplotlib for the bench plots).
# setup-dev: everything the tests need on top (web, ROS-bag, Triton clients, linters, Chromium).
$(BIN)/edgeseg: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[plot]'
	touch $(BIN)/edgeseg

$(VENV)/.dev: $(BIN)/edgeseg
	# headless Chromium + its driver for the web sink's real-browser tests (root only; else
	# those tests skip saying why)
	if [ "$$(id -u)" = 0 ] && ! [ -x /usr/bin/chromedriver ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi
	$(BIN)/pip install -q -e '.[dev,nvml,web]'
	# A real tritonserver (Python backend) for tests/test_triton.py: the binary inside the
	# nvidia-pytriton wheel; --no-deps because its package pins numpy < 2 (never imported).
	$(BIN)/pip install -q --no-deps 'nvidia-pytriton>=0.5'
	touch $(VENV)/.dev

setup: $(BIN)/edgeseg
setup-dev: $(VENV)/.dev

demo: setup
	$(BIN)/edgeseg demo --out outputs

test: setup-dev
	$(BIN)/python -m pytest -q

lint: setup-dev
	$(BIN)/ruff check edgeseg tests benchmarks
	# TensorRT types come from the vendored, corrected stubs in typings/ (pyproject mypy_path)
	$(BIN)/mypy edgeseg/deploy edgeseg/runtime edgeseg/artifacts edgeseg/train edgeseg/models edgeseg/doctor

clean:
	rm -rf $(VENV) outputs .pytest_cache
