# Two commands: `make dev` (the local stack) and `make test` (everything CI checks).
# Both install their tools first into .venv (ignored by git), from .ci/requirements.txt.

VENV := .venv
TOOLS := $(VENV)/.installed

.PHONY: dev test tools clean

dev: $(TOOLS)
	@bash .ci/dev

test: $(TOOLS)
	@bash .ci/test

tools: $(TOOLS)

$(TOOLS): .ci/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r .ci/requirements.txt
	@touch $@

clean:
	rm -rf $(VENV) .dev .aws-sam
	cargo clean
