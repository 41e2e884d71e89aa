#!/usr/bin/env bash
# Retrain and package every shipped model (x2, x4, x8 and their isotropic x*_3d), from the repository root with ../shared beside it:
#     bash tools/retrain_packaged.sh [SCALE ...]        (default: 4 2 8)
# Each scale: its predictor (`train/*/predictor_x{s}`) and its refiner, packaged by `tools/package_models.py` as x{s}; then
# the isotropic predictor starts from that x{s} (`train/*/predictor3d_x{s}`) and x{s}_3d is written. The refiners: x4 and
# x8 carry the x4 refiner of `train/16_64/refine_x4` (x4.md: refiners fine-tuned under the scan-window intensity model
# were timid on the sandstone at x4); x2 fine-tunes it at x2 (`train/32_64/refine_x2`), chosen on trained-on slices. Every run resumes (`--resume auto`): an interrupted script
# continues where it stopped. One thread per process unless OMP_NUM_THREADS says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
SR3XCT="${SR3XCT:-.venv/bin/sr3xct}"; PY="${PY:-.venv/bin/python}"
declare -A DIR=([2]=32_64 [4]=24_96 [8]=16_128)
REFINER=sr3xct/pretrained/x4.safetensors
latest() { ls "runs/$1/checkpoints"/iter_*.pt | tail -1; }
for s in ${@:-4 2 8}; do
  $SR3XCT train -c "train/${DIR[$s]}/predictor_x$s" --resume auto
  ref="$REFINER"
  if [ "$s" = 2 ]; then
    $SR3XCT train -c train/32_64/refine_x2 --resume auto --set "diffusion.base=$(latest predictor_x2)"; ref="$(latest refine_x2)"
  fi
  $PY tools/package_models.py "$s" "$(latest predictor_x$s)" "$ref"
  $SR3XCT train -c "train/${DIR[$s]}/predictor3d_x$s" --resume auto
  $PY tools/package_models.py "$s" "$(latest predictor3d_x$s)" "$ref" --isotropic
done
