# `make run` and `make test` work on a clean clone: they create and reuse .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
# The quickstart: the paper's GI NIP experiment (paper networks, 2048 frames x 10 epochs per
# iteration), shortened to 50 iterations on 2,000 pairs: about five minutes on 2 cores.
QUICKSTART := trainer.num_iterations=50 scenario.num_train_pairs=2000 scenario.num_test_pairs=200 \
	trainer.test_interval=10 checkpoint.interval=10 hydra.run.dir=outputs/quickstart

.PHONY: run test lint install clean bench docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The docs extra (Sphinx, furo, myst-parser) goes into the same venv, on first use only.
$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

# The HTML documentation in docs/_build/html; any Sphinx warning fails the build.
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

run: $(STAMP)
	$(BIN)/python -m nip.run $(QUICKSTART) $(ARGS)
	@echo "Outputs: outputs/quickstart (metrics.jsonl, training_curves.png, checkpoints/, run.log)"

lint: $(STAMP)
	$(BIN)/ruff check nip tests benchmarks docs
	$(BIN)/ruff format --check nip tests benchmarks docs

# Two workers, each taking whole test files, slowest first (tests/conftest.py orders them): a
# module's fixtures are built once, and the SLURM tests run one after the other.
test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=10

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/data_generation.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache docs/_build docs/api/_autosummary docs/reference/_generated
