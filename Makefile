# The README's commands. Every target works on a fresh clone: what it needs, it installs.
CARGO ?= cargo

.PHONY: demo test check lint fmt doc venv clean-emulator sam-build ci toolchain

## Run the whole flow on the embedded backend (no AWS, no emulator).
demo: toolchain
	$(CARGO) run --quiet -p wfs-cli -- demo $(ARGS)

## The full test suite: unit, contract (twin + moto) and end-to-end tests against moto, and
## the benchmarks run once as tests. `--tests --benches` rather than `--all-targets`: the
## latter also builds the function binaries (`test = false`, no tests) as test executables.
test: toolchain
	scripts/with-emulator.sh $(CARGO) test --workspace --tests --benches

## Type-check everything (tests included) without building binaries.
check: toolchain
	$(CARGO) check --workspace --all-targets

## Formatting, lints and the unused-dependency check, as CI runs them.
lint: toolchain
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	scripts/unused-deps.py

fmt: toolchain
	$(CARGO) fmt --all

## API documentation of the workspace crates; warnings (broken links, ...) are errors.
doc: toolchain
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace

## The project-local Python venv (moto).
venv:
	scripts/venv.sh

## Stop a long-running emulator started with `scripts/emulator.sh start`.
clean-emulator:
	scripts/emulator.sh stop

## Release build of every function for Lambda (arm64) with `sam build`; installs SAM CLI,
## cargo-lambda and zig into .venv and the aarch64 Rust target. Offline: no AWS account.
sam-build: toolchain
	scripts/sam-build.sh

## Everything CI runs.
ci:
	.ci/run

## The compiler rust-toolchain.toml pins (registered from the installed stable when it is
## that version; installed by rustup otherwise).
toolchain:
	@scripts/toolchain.sh
