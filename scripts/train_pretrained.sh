#!/usr/bin/env bash
# Trains the IDF models shipped in flowkernels/pretrained/ (fixed seeds). The results are
# deterministic on a given machine and torch build.
#
#   bash scripts/train_pretrained.sh [digits|photos-gray|photos-rgb|photos-dev-gray|photos-dev-rgb ...]
#   (default: all five)
#
# Per data set, two steps:
#   1. the float model, idf_<name>_float.pt (about 25 minutes for the first three on 2 CPU cores;
#      photos-dev-gray and photos-dev-rgb, 64x64 patches that include the development wallpapers of
#      flowkernels.photo_sources (apt-get install mate-backgrounds), about 45 minutes each on one core,
#      and the two can run side by side on 2 cores);
#   2. the shipped integer model, idf_<name>.pt: quantization-aware fine-tuning of the float model,
#      then conversion to integer-only networks (about 10 minutes for the first three), so that its
#      files decode on any machine. train-idf prints the test bits/dim of both.
# Set FLOAT=0 to keep the float models and redo step 2 only. An interrupted float step continues
# where it stopped when run again (train-idf --resume). Only the first three float models ship (to
# decode files made before the integer models); the photos-dev float models stay in $out as build
# products and are not part of the package (.gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
out=flowkernels/pretrained
mkdir -p "$out"
datasets=("$@")
[ ${#datasets[@]} -eq 0 ] && datasets=(digits photos-gray photos-rgb photos-dev-gray photos-dev-rgb)
for dataset in "${datasets[@]}"; do
  shape=()
  case "$dataset" in
    digits) epochs=60; qat_epochs=5 ;;
    photos-gray|photos-rgb) epochs=15; qat_epochs=2 ;;
    photos-dev-gray|photos-dev-rgb) epochs=12; qat_epochs=1; shape=(--patch-size 64 --batch-size 16) ;;
    *) echo "unknown dataset $dataset" >&2; exit 2 ;;
  esac
  name="idf_${dataset//-/_}"
  if [ "${FLOAT:-1}" != 0 ]; then
    echo "== $name""_float.pt: $epochs epochs, seed 0"
    flowkernels train-idf --dataset "$dataset" "${shape[@]}" --epochs "$epochs" --seed 0 --no-progress \
      --resume --out "$out/${name}_float.pt"
  fi
  echo "== $name.pt: $qat_epochs quantization-aware epochs from ${name}_float.pt, seed 0"
  flowkernels train-idf --dataset "$dataset" "${shape[@]}" --init "$out/${name}_float.pt" --epochs 0 \
    --qat-epochs "$qat_epochs" --seed 0 --no-progress --out "$out/$name.pt"
done
