#!/usr/bin/env bash
# Trains the IDF models shipped in flowkernels/pretrained/ (fixed seeds). The results are
# deterministic on a given machine and torch build.
#
#   bash scripts/train_pretrained.sh [digits|photos-gray|photos-rgb ...]   # default: all three
#
# Per data set, two steps:
#   1. the float model, idf_<name>_float.pt (about 25 minutes for all three on 2 CPU cores);
#   2. the shipped integer model, idf_<name>.pt: quantization-aware fine-tuning of the float model,
#      then conversion to integer-only networks (about 10 minutes for all three), so that its files
#      decode on any machine. train-idf prints the test bits/dim of both.
# Set FLOAT=0 to keep the float models and redo step 2 only.
set -euo pipefail
cd "$(dirname "$0")/.."
out=flowkernels/pretrained
mkdir -p "$out"
datasets=("$@")
[ ${#datasets[@]} -eq 0 ] && datasets=(digits photos-gray photos-rgb)
for dataset in "${datasets[@]}"; do
  case "$dataset" in
    digits) epochs=60; qat_epochs=5 ;;
    photos-gray|photos-rgb) epochs=15; qat_epochs=2 ;;
    *) echo "unknown dataset $dataset" >&2; exit 2 ;;
  esac
  name="idf_${dataset//-/_}"
  if [ "${FLOAT:-1}" != 0 ]; then
    echo "== $name""_float.pt: $epochs epochs, seed 0"
    flowkernels train-idf --dataset "$dataset" --epochs "$epochs" --seed 0 --no-progress \
      --out "$out/${name}_float.pt"
  fi
  echo "== $name.pt: $qat_epochs quantization-aware epochs from ${name}_float.pt, seed 0"
  flowkernels train-idf --dataset "$dataset" --init "$out/${name}_float.pt" --epochs 0 \
    --qat-epochs "$qat_epochs" --seed 0 --no-progress --out "$out/$name.pt"
done
