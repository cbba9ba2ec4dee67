#!/usr/bin/env bash
# Create ./.venv and install archiver with its training, test and benchmark extras (CPU torch wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e ".[train,test,bench]"
