#!/usr/bin/env python3
"""Fails when a workspace crate declares a dependency its code never names.

A cheap stand-in for `cargo machete`: for each workspace member (from `cargo metadata`),
every dependency's library name (`-` read as `_`, or its rename) must appear as a word in
one of the package's own `.rs` files (src/, tests/, benches/, examples/, build.rs). A
dependency that is needed without being named (only for a feature, say) is listed in the
package's `[package.metadata.cargo-machete] ignored = ["name"]`, the list cargo-machete
reads too.
"""
import json
import os
import re
import subprocess
import sys


def rust_sources(package_dir):
    for sub in ("src", "tests", "benches", "examples"):
        for dirpath, _dirs, files in os.walk(os.path.join(package_dir, sub)):
            for name in files:
                if name.endswith(".rs"):
                    yield os.path.join(dirpath, name)
    build = os.path.join(package_dir, "build.rs")
    if os.path.exists(build):
        yield build


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    members = set(metadata["workspace_members"])
    unused = []
    for package in metadata["packages"]:
        if package["id"] not in members:
            continue
        package_dir = os.path.dirname(package["manifest_path"])
        text = "\n".join(open(path, encoding="utf-8").read() for path in rust_sources(package_dir))
        ignored = set(((package.get("metadata") or {}).get("cargo-machete") or {}).get("ignored", []))
        seen = set()
        for dep in package["dependencies"]:
            name = dep["rename"] or dep["name"]
            if name in seen or name in ignored:
                continue
            seen.add(name)
            ident = name.replace("-", "_")
            if not re.search(r"\b" + re.escape(ident) + r"\b", text):
                kind = dep["kind"] or "normal"
                unused.append(f"{package['name']}: {name} ({kind}) is declared in "
                              f"{os.path.relpath(package['manifest_path'])} but no .rs file of the package names `{ident}`")
    for line in unused:
        print(line, file=sys.stderr)
    if unused:
        print(f"{len(unused)} unused dependencies: remove them, or list a needed-but-unnamed one under "
              "[package.metadata.cargo-machete] ignored", file=sys.stderr)
        return 1
    print("unused dependencies: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
