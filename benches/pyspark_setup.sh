#!/usr/bin/env bash
# Installs what benches/spill_pyspark.py needs, a Java runtime and PySpark,
# when missing; quiet, and a no-op when both are already there.
#
#   bash benches/pyspark_setup.sh
#
# PYSPARK_TARGET=DIR installs PySpark into DIR (pip --target) instead of
# site-packages, for a machine whose disk is short: run the benchmark with
# PYTHONPATH=DIR then. PYTHON picks the interpreter (default python3).
set -euo pipefail
# Pinned so that timings compare across machines; Spark 3.5 supports
# Java 8, 11 and 17.
version=${PYSPARK_VERSION:-3.5.9}
python=${PYTHON:-python3}
target=${PYSPARK_TARGET:-}

if ! command -v java >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if ! PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
    "import sys, pyspark; sys.exit(pyspark.__version__ != '$version')" 2>/dev/null; then
  # PyPI has only an sdist: pip unpacks it and builds a ~300 MB wheel in
  # TMPDIR before installing, so build in RAM when /dev/shm is there rather
  # than needing three copies' room on disk.
  build=$(mktemp -d -p "$([ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")
  trap 'rm -rf "$build"' EXIT
  args=(-q --no-cache-dir --disable-pip-version-check --root-user-action=ignore)
  [ -n "$target" ] && args+=(--target "$target" --upgrade)
  # A Debian-managed Python refuses plain installs: then ask again.
  TMPDIR=$build "$python" -m pip install "${args[@]}" "pyspark==$version" 2>/dev/null ||
    TMPDIR=$build "$python" -m pip install "${args[@]}" --break-system-packages "pyspark==$version"
fi
