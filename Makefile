# `make bench`: set up .venv, run the asv suite (quick) on this machine, regenerate charts/tables.
# `make test`: set up .venv and run the tests.  `make perf`: the CI performance check, and the
# dry run of the staged GPU script (benchmarks/gpu.sh --dry-run).
VENV ?= .venv
PY := $(VENV)/bin/python
ASV := $(VENV)/bin/asv
STAMP := $(VENV)/.installed
# forkserver pays for importing torch once (CPU-only runs); CUDA needs spawn (the GPU script sets it).
LAUNCH ?= forkserver
BENCH ?= .

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

.PHONY: bench test perf asv-machine
asv-machine: $(STAMP)
	$(ASV) machine --yes --machine "$$($(VENV)/bin/lrbench machine)" --os "$$(uname -sr)" \
	  --arch "$$(uname -m)" --cpu "$$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" \
	  --num_cpu "$$(nproc)" --ram "$$(free -b | awk '/Mem/{print $$2}')" > /dev/null

bench: asv-machine
	$(ASV) run -E existing:$(abspath $(PY)) --quick --launch-method $(LAUNCH) -b '$(BENCH)' \
	  --set-commit-hash "$$(git rev-parse HEAD)" --machine "$$($(VENV)/bin/lrbench machine)"
	$(VENV)/bin/lrbench report

test: $(STAMP)
	$(PY) -m pytest

perf: asv-machine
	$(ASV) check -E existing:$(abspath $(PY))
	$(ASV) run -E existing:$(abspath $(PY)) --quick --dry-run --launch-method $(LAUNCH) \
	  --machine "$$($(VENV)/bin/lrbench machine)"
	$(VENV)/bin/lrbench perfcheck $(if $(PERF_JSON),--json $(PERF_JSON))
	PYTHON=$(abspath $(PY)) OUT=$$(mktemp -d) bash benchmarks/gpu.sh --dry-run all "$$(git rev-parse HEAD)"
