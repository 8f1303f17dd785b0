# One-command set-up and jobs. Every target creates/updates the virtual environment first.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE := resources/sample_scene.tif
# The lock: every package at the exact version CI tested (docs/design.md, "Reproducible installs").
LOCK := requirements/constraints.txt
TORCH := 2.13.0
PIP := $(BIN)/python -m pip install --quiet --constraint $(LOCK)

.PHONY: venv sysdeps test test-fast test-package lint run sample bench package qgis-plugin lock clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip setuptools
	# torch first, pinned: a plain requirement would pull a several-GB CUDA build.
	$(PIP) torch==$(TORCH)
	# The project's build backend is the locked setuptools above, not whatever is newest today.
	$(PIP) --no-build-isolation -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rsvg_desktop tests benchmarks tools packaging
	$(BIN)/ruff format --check rsvg_desktop tests benchmarks tools packaging
	$(BIN)/lint-imports
	$(BIN)/mypy

# Debian tools the tests use: desktop-file-utils and appstream validate the desktop files, gdal-bin's
# ogrinfo reads our exports back (installed when run as root, e.g. in CI).
sysdeps:
	@command -v desktop-file-validate >/dev/null && command -v appstreamcli >/dev/null && \
	  command -v ogrinfo >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq desktop-file-utils appstream gdal-bin >/dev/null; } || \
	echo "warning: install desktop-file-utils, appstream and gdal-bin (Debian) for the tests"
	@# QGIS 3.22+ and its Python bindings for the plugin's tests (tests/qgis, docs/qgis.md).
	@/usr/bin/python3 -c "import qgis.core" 2>/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qgis python3-qgis python3-gdal >/dev/null; } || \
	echo "warning: install qgis and python3-qgis (Debian) for the QGIS plugin's tests"
	@# WordNet 3.0 for rsvg bench's METEOR (Debian wordnet-base, /usr/share/wordnet).
	@test -f /usr/share/wordnet/data.noun || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null; } || \
	echo "warning: install wordnet-base (Debian) for METEOR in rsvg bench"

# pytest workers (pytest-xdist); JOBS=0 runs the tests in one process.
JOBS ?= 2

# Every test but those of the frozen package (make test-package builds and tests that).
test: lint sysdeps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n $(JOBS) -m "not package" --durations=15

# The frozen desktop package: build it (make package, cached) and run its tests.
test-package: package sysdeps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m package --durations=5 tests/packaging

# The quick loop while editing: no model-building integration tests, no Qt.
test-fast: $(STAMP) sysdeps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n $(JOBS) -m "not slow and not gui and not package" --durations=10

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
	$(BIN)/python benchmarks/bench_change_match.py
	$(BIN)/python benchmarks/bench_change_warp.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_batch.py

# The desktop app as a self-contained folder, dist/rsvg-desktop/ (packaging/README.md). Rebuilt only
# when the code, the spec, the manifests or the resources changed.
PACKAGE := dist/rsvg-desktop/.built
PACKAGE_INPUTS := $(shell find rsvg_desktop models resources packaging -type f -not -name '*.pyc' 2>/dev/null) pyproject.toml

package: $(PACKAGE)

$(PACKAGE): $(STAMP) $(PACKAGE_INPUTS)
	$(PIP) -e '.[package]' --no-build-isolation
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/rsvg-desktop.spec
	ln -sfn rsvg-desktop dist/rsvg-desktop/rsvg
	touch $@

# The QGIS plugin (packaging/qgis/rsvg_qgis, docs/qgis.md) as dist/rsvg_qgis.zip: Plugins ▸ Install from ZIP.
qgis-plugin:
	$(PY) packaging/qgis/build.py -o dist/rsvg_qgis.zip

# Re-resolve every dependency as of today into $(LOCK), in a fresh venv. Then run `make test test-package`
# and commit the new lock only when both pass: until then a fresh clone keeps installing the old one.
LOCK_VENV := build/lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --quiet torch==$(TORCH)
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev,package]'
	{ sed -n '1,/^$$/p' $(LOCK); $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | \
	  sed -E 's/^(torch==[0-9.]+)\+cpu$$/\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "$(LOCK) rewritten: run make test test-package before committing it"

clean:
	rm -rf $(VENV) build dist .pytest_cache
