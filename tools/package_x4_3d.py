"""Write the packaged isotropic model `sr3xct/pretrained/x4_3d.safetensors`: the predictor of a `predictor3d_x4` run
(its EMA weights) with the refiner of the packaged x4 model, recorded as trained on 3D-degraded planes.

    python tools/package_x4_3d.py runs/predictor3d_x4/checkpoints/iter_00002000.pt

The refiner is the x4 one unchanged: it refines the predictor's output plane by plane, and `sr3xct.volume3d.refine3d`
runs it on planes of all three orientations. See `sr3xct/pretrained/x4_3d.md` for how it was trained and measured.
"""
import sys
from pathlib import Path
from sr3xct.models import load_model, save_model, packaged_path
from sr3xct.infer import SRModel

def main(checkpoint:str, out:Path=Path(__file__).resolve().parents[1] / 'sr3xct' / 'pretrained' / 'x4_3d.safetensors'):
    pred = load_model(checkpoint, 4)
    if pred.degradation != '3d' or pred.predictor is None: sys.exit(f'{checkpoint}: not a predictor trained with data.degradation 3d')
    x4 = load_model(packaged_path(4), 4)
    model = SRModel(4, pred.predictor, x4.diffusion, {}, x4.start, x4.tile, '3d')
    print(f'wrote {save_model(model, out)}')

if __name__ == '__main__':
    if len(sys.argv) != 2: sys.exit(__doc__)
    main(sys.argv[1])
