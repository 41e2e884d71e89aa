"""Write a packaged model `sr3xct/pretrained/x{SCALE}.safetensors` (or, --isotropic, `x{SCALE}_3d`): the EMA weights of a
predictor run with a refiner (the refiner diffuses HR - P(LR) at HR resolution, so one of any scale serves; the shipped
models all carry the x4 refiner of `train/16_64/refine_x4`, see the model cards).

    python tools/package_models.py SCALE PREDICTOR_CHECKPOINT REFINER [--isotropic] [--out FILE]

REFINER: a refiner run's checkpoint or a model file holding one (e.g. `sr3xct/pretrained/x4.safetensors`).

`bash tools/retrain_packaged.sh` trains every run and calls this; the model cards (`sr3xct/pretrained/*.md`) say how the shipped
files were trained and what they measure on held-out data.
"""
import argparse
from pathlib import Path
from sr3xct.models import load_model, save_model
from sr3xct.models import SRModel

PRETRAINED = Path(__file__).resolve().parents[1] / 'sr3xct' / 'pretrained'
TILE = 128   # HR tiles the refiner denoises together (whole-slice sampling)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('scale', type=int, choices=[2, 4, 8]); ap.add_argument('predictor'); ap.add_argument('refiner')
    ap.add_argument('--isotropic', action='store_true', help='the predictor trained with data.degradation 3d: writes x{SCALE}_3d')
    ap.add_argument('--out', help='where to write (default: sr3xct/pretrained/x{SCALE}[_3d].safetensors)')
    a = ap.parse_args()
    pred, ref = load_model(a.predictor, a.scale), load_model(a.refiner)   # the refiner: of any scale
    if pred.predictor is None: ap.error(f'{a.predictor}: holds no predictor')
    if (pred.degradation == '3d') != a.isotropic:
        ap.error(f"{a.predictor}: trained with degradation {pred.degradation!r}; --isotropic needs '3d', x{a.scale} needs '2d'")
    if ref.diffusion is None: ap.error(f'{a.refiner}: holds no refiner')
    model = SRModel(a.scale, pred.predictor, ref.diffusion, {}, ref.start, ref.tile or TILE, pred.degradation)
    out = a.out or PRETRAINED / f"x{a.scale}{'_3d' if a.isotropic else ''}.safetensors"
    print(f'wrote {save_model(model, out)}')

if __name__ == '__main__':
    main()
