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
# use; about 10 min on a quiet 2-core machine); FULL=1 the whole suite (torch.compile'd peers too);
# BENCH=REGEX only the benchmarks (or "name(params)") matching it. docs/asv.md has the details.
BENCH ?=
FULL ?=

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

.PHONY: bench test perf asv-machine peers
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

# `make peers`: the peers of benchmarks/bench_peers.py beside auto, in two environments (about
# 6 min, 3.5 GB of downloads on a fresh machine): .venv with jax and torchlpc built from its sdist
# against torch 2.13 (C++/OpenMP; a compiler is needed), and $(PEERS_VENV) with torch 2.14.1, which
# philtorch's wheels require (and torchlpc's prebuilt wheel, built for 2.14). Each environment's
# rows are a history of their own (its torch is in the name); `lrbench report` tables them.
PEERS_VENV ?= .venv-peers
PEERS_PINS := jax==0.10.2 jaxlib==0.10.2 numpy==2.4.6 numba==0.68.1 pandas==3.1.1 \
  matplotlib==3.11.2 tqdm==4.70.1 asv==0.6.6 asv-runner==0.3.2
peers: asv-machine
	$(PY) -m pip install -q -e '.[peers]'
	$(PY) -m pip install -q --no-deps --no-build-isolation torchlpc==0.7.2
	test -x $(PEERS_VENV)/bin/python || python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q torch==2.14.1 philtorch==0.7.0 torchlpc-wheels==0.8.0.214 \
	  $(PEERS_PINS)
	$(PEERS_VENV)/bin/pip install -q --no-deps -e .
	$(PY) -m lrbench.asv_results bench --python $(abspath $(PY)) --launch-method $(LAUNCH) \
	  -b '^bench_peers\.'
	$(PY) -m lrbench.asv_results bench --python $(abspath $(PEERS_VENV))/bin/python \
	  --launch-method $(LAUNCH) -b '^bench_peers\.'
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
