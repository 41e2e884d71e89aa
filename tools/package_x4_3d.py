"""Write the packaged isotropic model `sr3xct/pretrained/x4_3d.safetensors`: the predictor of a `predictor3d_x4` run
(its EMA weights) with a refiner: that of a refiner run on 3D-degraded planes when given, else the packaged x4 one.

    python tools/package_x4_3d.py PREDICTOR_CHECKPOINT [REFINER_CHECKPOINT] [--out FILE]

See `sr3xct/pretrained/x4_3d.md` for how the shipped file was trained and measured.
"""
import argparse
from pathlib import Path
from sr3xct.models import load_model, save_model, packaged_path
from sr3xct.infer import SRModel

OUT = Path(__file__).resolve().parents[1] / 'sr3xct' / 'pretrained' / 'x4_3d.safetensors'

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('predictor'); ap.add_argument('refiner', nargs='?'); ap.add_argument('--out', default=str(OUT))
    a = ap.parse_args()
    pred = load_model(a.predictor, 4)
    if pred.degradation != '3d' or pred.predictor is None: ap.error(f'{a.predictor}: not a predictor trained with data.degradation 3d')
    ref = load_model(a.refiner or packaged_path(4), 4)
    if ref.diffusion is None: ap.error(f'{a.refiner}: holds no refiner')
    model = SRModel(4, pred.predictor, ref.diffusion, {}, ref.start, ref.tile or load_model(packaged_path(4), 4).tile, '3d')
    print(f'wrote {save_model(model, a.out)}')

if __name__ == '__main__':
    main()
