#!/usr/bin/env bash
# Set up, then pack the bundled example collection and extract it again (about 3 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p demo-output
rm -rf demo-output/photos.nca demo-output/restored
archiver pack examples/photos -o demo-output/photos.nca --time-limit 2m
archiver list demo-output/photos.nca
archiver extract demo-output/photos.nca -o demo-output/restored
archiver verify demo-output/photos.nca --decode
