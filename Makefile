# The README's commands. Every target works on a fresh clone: what it needs, it installs.
CARGO ?= cargo

.PHONY: demo test check lint fmt venv clean-emulator

## Run the whole flow on the embedded backend (no AWS, no emulator).
demo:
	$(CARGO) run --quiet -p wfs-cli -- demo $(ARGS)

## The full test suite: unit, contract (twin + moto) and end-to-end tests against moto.
test:
	scripts/with-emulator.sh $(CARGO) test --workspace --all-targets

## Formatting and lints, as CI runs them.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The project-local Python venv (moto).
venv:
	scripts/venv.sh
