# Two commands: `make dev` (the local stack) and `make test` (everything CI checks).
# Every target installs its tools first (scripts/tools: .venv, scripts/node_modules, ignored by
# git) and calls them by path, so a fresh shell with nothing activated is enough.

TOOLS := .venv/.installed

.PHONY: dev rotate-keys test build rehearse smoke bench load fuzz audit tools clean

# The local stack: API on http://127.0.0.1:9000 (http://localhost:9000 for browser apps), the
# example app on http://localhost:3000, mail at http://127.0.0.1:4566/local/inbox.
dev: $(TOOLS)
	@bash scripts/dev

# Rotates the signing keys of the running `make dev` stack, as Secrets Manager's schedule does.
rotate-keys: $(TOOLS)
	@.venv/bin/python scripts/local_aws.py rotate --stack .dev/$${API_PORT:-9000}/rotation

test: $(TOOLS)
	@bash .ci/test

# Release build of every function for Lambda (arm64), exactly as `sam deploy` will ship it.
build: $(TOOLS)
	@bash scripts/build

# The deploy rehearsal: the bootstraps of `make build`, each with its template environment, behind
# a local stack, and the smoke test through them (arm64 under qemu-user-static on x86_64).
rehearse: $(TOOLS)
	@.venv/bin/python scripts/rehearse.py

# The full flow against a running stack: make smoke API_URL=https://... [SMOKE_EMAIL=you@...]
smoke: $(TOOLS)
	@.venv/bin/python scripts/smoke.py "$(API_URL)"

# Cold starts, memory, sizes, server time per endpoint against its floors: one table, also in
# target/bench/bench.md and bench.json. With BASELINE=<rev>: server time per endpoint of <rev>
# and of the working tree side by side in one run (target/bench/compare.md).
bench: $(TOOLS)
	@.venv/bin/python scripts/bench.py $(if $(BASELINE),--baseline $(BASELINE))

# Concurrent clients against the local stack for a few minutes, then an audit of the tables:
# LOAD_SECONDS (180), LOAD_CLIENTS (16), LOAD_MAX_REQUESTS (50000). Table in target/load/load.md.
load: $(TOOLS)
	@.venv/bin/python scripts/load.py

# Coverage-guided fuzzing of the body parser and the token verifier (cargo-fuzz, installed into
# .venv): FUZZ_SECONDS per target (120).
fuzz: $(TOOLS)
	@bash scripts/fuzz

# The dependency graph against deny.toml (cargo-deny): licences, banned crates, sources and the
# RustSec advisories (which need GitHub; CI checks the rest).
audit: $(TOOLS)
	@bash scripts/audit

tools: $(TOOLS)

$(TOOLS): scripts/tools scripts/requirements.txt scripts/package-lock.json
	@bash scripts/tools
	@touch $@

clean:
	rm -rf .venv .dev .aws-sam scripts/node_modules
	cargo clean
