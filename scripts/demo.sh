#!/usr/bin/env bash
# Set up, then pack the bundled example collection with the default codec and quality, extract it again,
# and compare the cat's bytes with JPEG's at the same PSNR (under 5 minutes on 2 CPU cores: the pack
# itself takes its --time-limit of 2 minutes, training to writing).
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
echo
echo "restored files: $(pwd)/demo-output/restored (the archive: demo-output/photos.nca)"
python -m archiver.bench.nearest demo-output/photos.nca examples/photos cat.png
