# maskprivacy: one command each to set up, run the demo, test and lint.
#   make demo   set up .venv (Python 3.11) and run the whole pipeline on the embedded demo set
#   make test   set up .venv, lint, and run the test suite (what CI runs)
#   make lint   ruff, snakefmt, snakemake --lint and the dvc.yaml and docs/parameters.md drift checks
#   make dvc-adopt        record a finished Snakemake run in DVC (dvc.lock, cache), recomputing nothing under either runner
#   make snakemake-adopt  make Snakemake accept outputs restored by dvc pull/checkout (needs dvc status clean)
#   make wheelhouse       Snakemake's wheels in .gpu/wheels, for a node without internet (docs/running.md: Offline nodes)
#   make dlib-blas        dlib built against OpenBLAS in .venv: the recognizer's descriptors 4.5x faster (docs/recognizer.md)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg

.PHONY: setup demo repro test lint dvc-yaml dvc-adopt snakemake-adopt wheelhouse dlib-blas clean

setup: $(STAMP)

# The venv takes about 6.3 GiB (torch's CUDA build is 5.6 GiB of it): say so before pip runs out
# of disk half-way. Set NEED_MIB=0 to skip the check.
NEED_MIB ?= 7000

$(STAMP): pyproject.toml constraints.txt
	@free=$$(df -Pm . | awk 'NR==2 {print $$4}'); \
	if [ "$$free" -lt "$(NEED_MIB)" ]; then \
	  echo "make setup: only $$free MiB free on $$(df -P . | awk 'NR==2 {print $$6}'), the venv needs about $(NEED_MIB) MiB (torch's CUDA build); free some disk, or set NEED_MIB=0 to try anyway" >&2; \
	  exit 1; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-cache-dir --upgrade pip
	# torch first, pinned: pip takes this CUDA build (it also runs on CPU) from local disk here
	$(BIN)/python -m pip install -q --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q --no-cache-dir -c constraints.txt -e '.[workflow,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/snakemake --cores all
	@echo "make demo: done. The answer and its evidence: results/report.html (open it in a browser)."
	@echo "In a new shell, first: source .venv/bin/activate (then snakemake, dvc; README.md, Try it)."

repro: setup
	$(BIN)/dvc repro

test: lint
	$(BIN)/python -m pytest -q -ra

lint: setup
	$(BIN)/ruff check src tests workflow/scripts benchmarks
	$(BIN)/ruff format --check src tests workflow/scripts benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint
	$(BIN)/python -m maskprivacy_workflow.dvcgen --check
	$(BIN)/python -m maskprivacy_workflow.paramdocs --check

dvc-yaml: setup
	$(BIN)/python -m maskprivacy_workflow.dvcgen

# A finished Snakemake run -> DVC, without recomputing: record every stage's deps and outputs
# in dvc.lock and the DVC cache, so `dvc status` is clean and `dvc repro` runs nothing.
dvc-adopt:
	dvc commit --force --quiet
	@# DVC's commit copies outputs back from its cache (new times; folders keep theirs): tell
	@# Snakemake they are still the outputs it made, so neither runner reruns anything
	snakemake --cores 1 --touch --quiet
	dvc status

# Outputs restored by DVC (`dvc pull`, `dvc checkout`) -> Snakemake: they carry new timestamps,
# so Snakemake would redo them. When they are exactly what dvc.lock records (`dvc status` clean),
# mark them up to date (snakemake --touch) instead.
snakemake-adopt:
	@dvc status --quiet || { echo "make snakemake-adopt: outputs differ from dvc.lock (see dvc status); run dvc pull or dvc checkout first" >&2; exit 1; }
	snakemake --cores 1 --touch --quiet

# Snakemake and what it needs (pulp aside: --scheduler greedy), pinned as installed here, as wheels
# for a machine without internet: there `pip install --no-index --find-links .gpu/wheels --no-deps
# -r .gpu/wheels/requirements.txt` (benchmarks/gpu_session.sh does it).
WHEELS ?= .gpu/wheels
wheelhouse: setup
	$(BIN)/python -m maskprivacy_workflow.wheelhouse $(WHEELS)

# dlib from its source, built against the system's OpenBLAS, in place of the dlib-bin wheel (which
# has no BLAS): dlib's face descriptor (identity, describe) takes 17 instead of 77 ms a face on one
# core here, equal to 5e-7 (docs/recognizer.md). conda-forge's dlib, in the rules' conda envs, has
# BLAS already. Needs cmake, a C++ compiler and OpenBLAS (Debian: apt-get install cmake g++
# libopenblas-dev); 27 min here on 2 cores shared with a training run (its link step is serial).
# `pip install --force-reinstall --no-deps dlib-bin` goes back.
DLIB_VERSION ?= 20.0.0
dlib-blas: setup
	@pkg-config --exists openblas 2>/dev/null || ls /usr/lib/*/libopenblas.so* >/dev/null 2>&1 || { echo "make dlib-blas: no OpenBLAS found (Debian: apt-get install libopenblas-dev); dlib would build without BLAS" >&2; exit 1; }
	$(BIN)/python -m pip wheel --no-deps --no-binary dlib --no-build-isolation -w .dlib-wheel "dlib==$(DLIB_VERSION)"
	$(BIN)/python -m pip install --no-deps --force-reinstall .dlib-wheel/dlib-$(DLIB_VERSION)-*.whl
	$(BIN)/python -c "import dlib, sys; print('dlib', dlib.__version__, 'with BLAS') if dlib.DLIB_USE_BLAS else sys.exit('make dlib-blas: the dlib built has no BLAS (see the cmake lines above)')"

clean:
	rm -rf data/download data/align data/mask data/split results/data results/mask results/train results/evaluate results/compare results/metrics.json results/report.html logs .snakemake
