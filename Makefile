# Two entry points that work on a fresh clone: `make demo` and `make test`. Both install the exact tested set
# (constraints.txt); pyproject.toml itself states version ranges.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

EXTRAS := test,napari,export,tensorboard,zarr,bench,docs

.PHONY: venv demo test docs clean constraints

$(BIN)/blurlatent: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(BIN)/blurlatent

venv: $(BIN)/blurlatent

demo: venv
	$(BIN)/blurlatent demo --out demo/ --force

test: venv
	$(BIN)/ruff check blurlatent tests benchmarks examples
	$(BIN)/mypy
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q

# The docs site into site/ (open site/index.html); --strict fails on a broken link or anchor, a page missing from
# the nav, or a docstring mkdocstrings cannot read. (No -q: mkdocs counts only the warnings it prints.)
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# After testing an upgrade in .venv: pin what it holds now (blurlatent itself, installed editable, left out).
constraints: venv
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) demo/ site/ .pytest_cache
