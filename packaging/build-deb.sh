#!/usr/bin/env bash
# Builds target/packaging/mailconfd_VERSION-1_ARCH.deb: the release binary,
# man pages and shell completions generated from the CLI, then `cargo deb`
# (installed from crates.io if missing). Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi

cargo build --release --locked
target_dir=${CARGO_TARGET_DIR:-target}
bin="$target_dir/release/mailconfd"

# Generated files go to ./target/packaging (Cargo.toml's deb assets name them there).
out=target/packaging
rm -rf "$out/man" "$out/completions"
mkdir -p "$out/man" "$out/completions"
"$bin" manpage --out-dir "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/mailconfd.bash"
"$bin" completions zsh >"$out/completions/_mailconfd"
"$bin" completions fish >"$out/completions/mailconfd.fish"

cargo deb --no-build --locked --output "$out/" >&2
ls -1t "$out"/mailconfd_*.deb | head -n1
