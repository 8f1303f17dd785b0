# One-command set-up and jobs. Every target creates/updates the virtual environment first.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := resources/sample_scene.tif

.PHONY: venv test test-fast lint run sample bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a plain requirement would pull a several-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rsvg_desktop tests benchmarks
	$(BIN)/ruff format --check rsvg_desktop tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q --durations=10

# The quick loop while editing: no model-building integration tests, no Qt.
test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow and not gui" --durations=10

# Main job: the app on the bundled sample scene.
run: $(STAMP)
	$(BIN)/rsvg-desktop $(SAMPLE)

# Headless main job on the bundled sample scene (the test model has RANDOM WEIGHTS).
sample: $(STAMP)
	mkdir -p build
	$(BIN)/rsvg info $(SAMPLE)
	$(BIN)/rsvg tiles $(SAMPLE) -o build/sample_tiles.gpkg --overwrite
	$(BIN)/rsvg detect $(SAMPLE) --query "cars" --smoke --precision nf4 --max-new-tokens 16 \
		-o build/sample_detections.gpkg --overwrite

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tiling.py
	$(BIN)/python benchmarks/bench_boxes.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) build .pytest_cache
