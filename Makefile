# One-command set-up and jobs. Every target creates/updates the virtual environment first.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := resources/sample_scene.tif

.PHONY: venv sysdeps test test-fast lint run sample bench package clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a plain requirement would pull a several-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rsvg_desktop tests benchmarks tools packaging
	$(BIN)/ruff format --check rsvg_desktop tests benchmarks tools packaging
	$(BIN)/lint-imports
	$(BIN)/mypy

# Debian tools the tests use to validate the desktop files (installed when run as root, e.g. in CI).
sysdeps:
	@command -v desktop-file-validate >/dev/null && command -v appstreamcli >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  apt-get install -y -qq desktop-file-utils appstream >/dev/null; } || \
	echo "warning: install desktop-file-utils and appstream (Debian) to validate the desktop files"
	@# WordNet 3.0 for rsvg bench's METEOR (Debian wordnet-base, /usr/share/wordnet).
	@test -f /usr/share/wordnet/data.noun || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  apt-get install -y -qq wordnet-base >/dev/null; } || \
	echo "warning: install wordnet-base (Debian) for METEOR in rsvg bench"

test: lint sysdeps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q --durations=10

# The quick loop while editing: no model-building integration tests, no Qt.
test-fast: $(STAMP) sysdeps
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

# The desktop app as a self-contained folder, dist/rsvg-desktop/ (packaging/README.md). Rebuilt only
# when the code, the spec, the manifests or the resources changed.
PACKAGE := dist/rsvg-desktop/.built
PACKAGE_INPUTS := $(shell find rsvg_desktop models resources packaging -type f -not -name '*.pyc' 2>/dev/null) pyproject.toml

package: $(PACKAGE)

$(PACKAGE): $(STAMP) $(PACKAGE_INPUTS)
	$(BIN)/python -m pip install --quiet 'pyinstaller>=6.10'
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/rsvg-desktop.spec
	ln -sfn rsvg-desktop dist/rsvg-desktop/rsvg
	touch $@

clean:
	rm -rf $(VENV) build dist .pytest_cache
