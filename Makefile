# Set-up and everyday commands. Each target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0  # the CPU wheel; the package itself accepts any 2.x
	$(BIN)/pip install --quiet -e ".[train,test]"
	touch $(STAMP)

demo: $(STAMP)  ## run the whole loop offline on built-in defaults
	HF_HUB_OFFLINE=1 $(BIN)/queryfit demo

test: $(STAMP)  ## the default test suite (slow runs are behind -m slow)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)  ## the reference experiment, needs ../shared/data/seed-10k
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/seed_10k.py

clean:
	rm -rf $(VENV) .queryfit build dist src/*.egg-info
