#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "== cargo fmt --check"
cargo fmt --all -- --check
