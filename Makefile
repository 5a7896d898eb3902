# Two entry points that work on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test clean

$(BIN)/blurlatent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,napari,export]'
	touch $(BIN)/blurlatent

venv: $(BIN)/blurlatent

demo: venv
	$(BIN)/blurlatent demo --out demo/ --force

test: venv
	$(BIN)/ruff check blurlatent tests benchmarks examples
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo/ .pytest_cache
