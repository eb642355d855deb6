#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
