# Two entry points that work on a fresh clone: `make demo` and `make test`. Both install with the exact tested set
# (constraints.txt); pyproject.toml itself states version ranges.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# make test: every extra, exactly the tested set (torch 2.14.1 as PyPI ships it, with its CUDA libraries)
EXTRAS := test,napari,export,tensorboard,zarr,bench,docs
TESTED := $(VENV)/.installed-test
# make demo: only what the demo needs (the tool and its eval extra), and a CPU build of torch where one is on
# offer: 1.4 GB instead of 5.9, a minute instead of three. TORCH_CPU names it: here, the torch 2.13.0 CPU wheel of
# this kind of machine's wheel folder; elsewhere e.g. TORCH_CPU="torch --index-url https://download.pytorch.org/whl/cpu",
# or TORCH_CPU= for PyPI's default build. When none is found, pip takes the tested one.
TORCH_CPU ?= torch==2.13.0+cpu
DEMO_READY := $(VENV)/.installed-demo

.PHONY: venv demo test docs clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(TESTED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@ $(DEMO_READY)

# After the full install, the demo needs nothing more (the recipe runs only when the demo comes first).
$(DEMO_READY): pyproject.toml constraints.txt | $(BIN)/python
	if [ -f $(TESTED) ]; then $(MAKE) --no-print-directory $(TESTED); else \
	  { [ -z "$(TORCH_CPU)" ] || $(BIN)/pip install -q $(TORCH_CPU) 2>/dev/null \
	    || echo "no CPU build of torch on offer ($(TORCH_CPU)); installing the tested build"; } && \
	  grep -v -E '^(torch|torchvision|triton|nvidia-)' constraints.txt > $(VENV)/constraints-demo.txt && \
	  $(BIN)/pip install -q -c $(VENV)/constraints-demo.txt -e '.[eval]'; fi
	touch $@

venv: $(TESTED)

demo: $(DEMO_READY)
	$(BIN)/blurlatent demo --out demo/ --force

test: $(TESTED)
	$(BIN)/ruff check blurlatent tests benchmarks examples
	$(BIN)/mypy
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q

# The docs site into site/ (open site/index.html); --strict fails on a broken link or anchor, a page missing from
# the nav, or a docstring mkdocstrings cannot read. (No -q: mkdocs counts only the warnings it prints.)
docs: $(TESTED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# After testing an upgrade in .venv: pin what it holds now (blurlatent itself, installed editable, left out).
constraints: $(TESTED)
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) demo/ site/ .pytest_cache
