#!/usr/bin/env bash
# Installs what the test suite needs besides Rust. Idempotent.
# - an S3-compatible server (moto_server, from PyPI) for the S3 shuffle tests;
# - headless Chromium (Debian) and Playwright (PyPI, driving that Chromium;
#   never `playwright install`, which downloads a browser) for the web UI test.
set -euo pipefail
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto_server (PyPI: moto[server]) for the S3 tests" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5' >&2
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian) for the web UI test" >&2
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get update -qq >&2 && $sudo apt-get install -y -qq chromium >&2
fi
if ! python3 -c 'import playwright' >/dev/null 2>&1; then
  echo "installing playwright (PyPI) for the web UI test" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'playwright>=1.40' >&2
fi
