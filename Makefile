# `make bench`: set up .venv, run the asv suite (quick) on this machine, regenerate charts/tables.
# `make test`: set up .venv and run the tests.  `make perf`: the CI performance check, and the
# dry run of the staged GPU script (benchmarks/gpu.sh --dry-run).
VENV ?= .venv
PY := $(VENV)/bin/python
ASV := $(VENV)/bin/asv
STAMP := $(VENV)/.installed
# forkserver pays for importing torch once (CPU-only runs); CUDA needs spawn (the GPU script sets it).
LAUNCH ?= forkserver
# `make bench` times lrbench/asv_results.py's DEFAULT_SUBSET (what the charts, tables and README
# use; about 7 min on a quiet 2-core machine); FULL=1 the whole suite (torch.compile'd peers too);
# BENCH=REGEX only the benchmarks (or "name(params)") matching it. docs/asv.md has the details.
BENCH ?=
FULL ?=

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

.PHONY: bench test perf asv-machine
# The machine's name only: asv stores just the fields that differ from its own defaults, and every
# field stored goes into each result's params, where `asv publish` would split the history by it.
asv-machine: $(STAMP)
	$(ASV) machine --yes --machine "$$($(VENV)/bin/lrbench machine)" > /dev/null

# asv run -E existing --quick with a progress line and the time left after each benchmark, then the
# results renamed to the environment `asv run`/`continuous` use (one history per machine).
bench: asv-machine
	$(PY) -m lrbench.asv_results bench --python $(abspath $(PY)) --launch-method $(LAUNCH) \
	  $(if $(FULL),--full,$(if $(BENCH),-b '$(BENCH)'))
	$(VENV)/bin/lrbench report

test: $(STAMP)
	$(PY) -m pytest

perf: asv-machine
	$(ASV) check -E existing:$(abspath $(PY))
	$(ASV) run -E existing:$(abspath $(PY)) --quick --dry-run --launch-method $(LAUNCH) \
	  --machine "$$($(VENV)/bin/lrbench machine)"
	$(VENV)/bin/lrbench perfcheck $(if $(PERF_JSON),--json $(PERF_JSON))
	PYTHON=$(abspath $(PY)) OUT=$$(mktemp -d) bash benchmarks/gpu.sh --dry-run all "$$(git rev-parse HEAD)"

# `make site`: `asv publish` (results/asv -> .asv/html), then point the pages at the vendored
# copies of asv's CDN scripts and styles (benchmarks/site/vendor/), so the site works offline.
# View: `$(ASV) preview` (or any static server on .asv/html; file:// can't load asv's JSON).
.PHONY: site
site: $(STAMP)
	$(PY) benchmarks/site/publish.py
