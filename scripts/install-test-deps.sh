#!/usr/bin/env bash
# Installs what the test suite needs besides Rust: an S3-compatible server
# (moto_server, from PyPI) for the S3 shuffle tests. Idempotent.
set -euo pipefail
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto_server (PyPI: moto[server]) for the S3 tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2
fi
