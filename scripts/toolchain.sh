#!/usr/bin/env bash
# Makes the compiler rust-toolchain.toml pins available to rustup. When rustup lacks it but
# the installed stable toolchain is that very version (a machine that cannot download one),
# the stable toolchain is registered under the pinned name; otherwise rustup installs it.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
home="${RUSTUP_HOME:-$HOME/.rustup}"
triple=$(RUSTUP_TOOLCHAIN=stable rustc -vV | sed -n 's/^host: //p')
if [ -e "$home/toolchains/$want-$triple" ]; then
    exit 0
fi
have=$(RUSTUP_TOOLCHAIN=stable rustc --version | awk '{print $2}')
if [ "$have" = "$want" ]; then
    ln -s "$home/toolchains/stable-$triple" "$home/toolchains/$want-$triple"
    echo "toolchain $want: the installed stable toolchain, registered under its version" >&2
else
    rustup toolchain install "$want" --profile minimal --component clippy,rustfmt
fi
