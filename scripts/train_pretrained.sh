#!/usr/bin/env bash
# Trains the IDF models shipped in flowkernels/pretrained/ (fixed seeds; about 25 minutes on
# 2 CPU cores). The results are deterministic on a given machine and torch build.
#
#   bash scripts/train_pretrained.sh [digits|photos-gray|photos-rgb ...]   # default: all three
set -euo pipefail
cd "$(dirname "$0")/.."
out=flowkernels/pretrained
mkdir -p "$out"
datasets=("$@")
[ ${#datasets[@]} -eq 0 ] && datasets=(digits photos-gray photos-rgb)
for dataset in "${datasets[@]}"; do
  case "$dataset" in
    digits) epochs=60 ;;
    photos-gray|photos-rgb) epochs=15 ;;
    *) echo "unknown dataset $dataset" >&2; exit 2 ;;
  esac
  echo "== idf_${dataset//-/_}.pt: $epochs epochs, seed 0"
  flowkernels train-idf --dataset "$dataset" --epochs "$epochs" --seed 0 --no-progress \
    --out "$out/idf_${dataset//-/_}.pt"
done
