# The README's commands. Each one sets up .venv first (see scripts/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_output

.PHONY: setup demo test gui screenshots

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/napari-nanowire demo --out $(OUT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

gui: setup
	$(BIN)/napari-nanowire gui

screenshots: setup
	$(BIN)/python scripts/screenshots.py
