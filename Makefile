# Two commands: `make dev` (the local stack) and `make test` (everything CI checks).
# Also: `make build` (sam build) and `make smoke API_URL=...` (the flow against any stack).
# Both install their tools first into .venv (ignored by git), from .ci/requirements.txt.

VENV := .venv
TOOLS := $(VENV)/.installed

.PHONY: dev test build smoke bench load fuzz tools clean

dev: $(TOOLS)
	@bash .ci/dev

test: $(TOOLS)
	@bash .ci/test

# Release build of every function for Lambda (arm64), exactly as `sam deploy` will ship it.
build: $(TOOLS)
	@bash .ci/build

# The full flow against a running stack: make smoke API_URL=https://... [SMOKE_EMAIL=you@...]
smoke:
	@python3 .ci/smoke.py "$(API_URL)"

# Cold starts, memory, sizes, server time per endpoint against its floors: one table, also in
# target/bench/bench.md and bench.json.
bench: $(TOOLS)
	@.venv/bin/python .ci/bench.py

# Concurrent clients against the local stack for a few minutes, then an audit of the tables:
# LOAD_SECONDS (180), LOAD_CLIENTS (16), LOAD_MAX_REQUESTS (50000). Table in target/load/load.md.
load: $(TOOLS)
	cargo build --workspace --bins
	@.venv/bin/python .ci/load.py

# Coverage-guided fuzzing of the body parser and the token verifier (cargo-fuzz, installed into
# .venv): FUZZ_SECONDS per target (120).
fuzz: $(TOOLS)
	@bash .ci/fuzz

tools: $(TOOLS)

$(TOOLS): .ci/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r .ci/requirements.txt
	@touch $@

clean:
	rm -rf $(VENV) .dev .aws-sam
	cargo clean
