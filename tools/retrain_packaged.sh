#!/usr/bin/env bash
# Retrain and package every shipped model (x2, x4, x8 and their isotropic x*_3d), from the repository root with ../shared beside it:
#     bash tools/retrain_packaged.sh [SCALE ...]        (default: 4 2 8)
# Each scale: the predictor, the refiner on it, `tools/package_models.py` writes x{s}; then the isotropic predictor starts from
# that x{s} and `x{s}_3d` is written. Every run resumes (`--resume auto`): an interrupted script continues where it stopped.
# One thread per process unless OMP_NUM_THREADS says otherwise (the models were trained beside other work).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
SR3XCT="${SR3XCT:-.venv/bin/sr3xct}"; PY="${PY:-.venv/bin/python}"
declare -A DIR=([2]=32_64 [4]=24_96 [8]=16_128) RDIR=([2]=32_64 [4]=16_64 [8]=16_128)
latest() { ls "runs/$1/checkpoints"/iter_*.pt | tail -1; }
for s in "${@:-4 2 8}"; do
  $SR3XCT train -c "train/${DIR[$s]}/predictor_x$s" --resume auto
  $SR3XCT train -c "train/${RDIR[$s]}/refine_x$s" --resume auto --set "diffusion.base=$(latest predictor_x$s)"
  $PY tools/package_models.py "$s" "$(latest predictor_x$s)" "$(latest refine_x$s)"
  $SR3XCT train -c "train/${DIR[$s]}/predictor3d_x$s" --resume auto
  $PY tools/package_models.py "$s" "$(latest predictor3d_x$s)" "$(latest refine_x$s)" --isotropic
done
