"""Isotropic 3D SR on a held-out real block, every variant against HR in the terms of the issue: PSNR (whole volume
and per plane orientation), high-frequency power Z/X against HR's, 3D porosity error, pore-size distance (3D local
thickness), Euler-characteristic error, two-point distance along Z and along X, and HR voxels/s.

    python bench/bench_realism3d.py [--size 128] [--threads 2] [--steps 20] [--predictor3d FILE] [--out bench/realism3d.json]

Data: `../shared/data/soil_beanbucket_pnnl_100x500x500_u8.tif` (see its NOTICE.md), slices 64-99 cropped to the central
`size` x `size`; LR = `degrade3d(HR, 4)` (4x4x4 block average) rounded to 8 bits like a stored scan. Everything is
computed on the whole 36-slice block (9 LR slices) but **scored on HR slices 80-99 only**: the packaged x4 model (and
the x4_3d predictor) never trained on them. Realism is one sample (seed 0), never the best of several.

`--plain-minutes M` adds a plain regression CNN (`bench_predict_refine.PlainCNN`, VDSR-style on the bicubic upsample)
trained for M minutes of wall time on the same 3D-degraded planes of all three orientations and training slices as
x4_3d (soil 0-79, sandstone 0-39), fused like x4_3d.

Variants: tricubic; fidelity of the packaged x4 (2D-trained predictor, mean of three orientations); fidelity of the
3D-trained predictor (`--predictor3d`, default the packaged x4_3d when it ships); realism plane by plane (the refiner
on the (Y, X) planes, each sampled alone); realism with the orientation alternating between sampler steps
(`sr3xct.volume3d.refine3d`, the default), on the 2D and on the 3D fidelity.
Porosity and pore sizes at the HR block's Otsu threshold; pore-size distance = Wasserstein-1 distance between the
local-thickness distributions (voxels); Euler error = |chi(SR) - chi(HR)| / |chi(HR)| of the pore phase (26-connected);
two-point distance = RMS difference of S2(r) for lags along one axis (`sr3xct.metrics.two_point_along`).
"""
import argparse, json, platform, time
from pathlib import Path
import numpy as np
import torch
from scipy.stats import wasserstein_distance
from sr3xct.io import read_volume
from sr3xct.resample import degrade3d, upsample3d
from sr3xct.data import default_scaling
from sr3xct.metrics import (plane_psnr, hf_power_fraction, hr_threshold, pore_mask, pore_size_distribution,
                            euler_characteristic, two_point_along, psnr)
from sr3xct.models import load_model, packaged_models
from sr3xct.volume3d import fidelity3d, refine3d
from sr3xct.models import SRModel
from sr3xct.sampling import SamplingOptions

SCORED = slice(16, 36)   # HR slices 80-99 of the block 64-99


def cpu_name() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def block(path, size):
    vol = read_volume(path)[0]
    y0 = (vol.shape[1] - size) // 2 // 4 * 4
    hr = np.ascontiguousarray(vol[64:100, y0:y0 + size, y0:y0 + size])
    sc = default_scaling(hr, scale=4, degradation='3d')   # the window of the LR volume, as `sr3xct infer` takes it
    lr = torch.from_numpy(sc.forward(sc.inverse(degrade3d(torch.from_numpy(sc.forward(hr)), 4).numpy())))
    return hr, lr, sc


def scores(sr, hr, t, seconds):
    "Every figure of `sr` against `hr` (uint8 volumes of the scored slices)."
    ms, mh = pore_mask(sr, t), pore_mask(hr, t)
    ps, ph = pore_size_distribution(ms), pore_size_distribution(mh)
    ch, cs = euler_characteristic(mh), euler_characteristic(ms)
    s2 = lambda m, a: two_point_along(m, a, r_max=16)['s2']
    hf = lambda v: hf_power_fraction(v, 0) / hf_power_fraction(v, 2)
    return {'psnr': psnr(sr, hr, 255), **{f'psnr_{k}': plane_psnr(sr, hr, 255, a) for a, k in enumerate(('yx', 'zx', 'zy'))},
            'hf_zx_vs_hr': hf(sr) / hf(hr), 'porosity_error': abs(ms.mean() - mh.mean()),
            'pore_size_distance': float(wasserstein_distance(ps['radius'], ph['radius'], ps['fraction'], ph['fraction'])),
            'euler_error': abs(cs - ch) / abs(ch), 'euler': cs,
            's2_distance_z': float(np.sqrt(np.mean((s2(ms, 0) - s2(mh, 0)) ** 2))),
            's2_distance_x': float(np.sqrt(np.mean((s2(ms, 2) - s2(mh, 2)) ** 2))), 'voxels_per_s': sr.size / seconds}


def timed(f):
    t = time.perf_counter(); out = f()
    return out, time.perf_counter() - t


def variants(x4, p3d, plain, lr, steps):
    "name -> thunk giving the whole block's SR volume in [-1, 1]."
    fid = lambda m: fidelity3d(m, lr, 4)
    real = lambda m, o: (lambda: refine3d(m, fid(m), SamplingOptions(steps=steps), o)[0])
    out = {'tricubic': lambda: upsample3d(lr, 4), 'fidelity x4': lambda: fid(x4),
           'realism x4, plane by plane': real(x4, ('yx',)), 'realism x4, alternating': real(x4, ('yx', 'zx', 'zy'))}
    if p3d is not None:
        out.update({'fidelity x4_3d': lambda: fid(p3d), 'realism x4_3d, alternating': real(p3d, ('yx', 'zx', 'zy'))})
    if plain is not None: out['fidelity plain CNN'] = lambda: fid(plain)
    return out


def table(rows):
    cols = ['psnr', 'psnr_yx', 'psnr_zx', 'psnr_zy', 'hf_zx_vs_hr', 'porosity_error', 'pore_size_distance', 'euler_error',
            's2_distance_z', 's2_distance_x', 'voxels_per_s']
    lines = ['| variant | ' + ' | '.join(cols) + ' |', '|---|' + '---:|' * len(cols)]
    lines += [f'| {k} | ' + ' | '.join(f'{r[c]:.4g}' for c in cols) + ' |' for k, r in rows.items()]
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=128); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=20); ap.add_argument('--out', default='bench/realism3d.json')
    ap.add_argument('--plain-minutes', type=float, default=0, help='also train a plain CNN on 3D-degraded planes for this long')
    ap.add_argument('--predictor3d', default=None, help='model file or checkpoint of a 3D-trained predictor (default: the packaged x4_3d)')
    ap.add_argument('--data', default=str(Path(__file__).resolve().parents[1].parent / 'shared/data/soil_beanbucket_pnnl_100x500x500_u8.tif'))
    a = ap.parse_args()
    if not Path(a.data).is_file(): print(f'{a.data}: not found (the shared data is not beside this clone); nothing measured'); return
    torch.set_num_threads(a.threads)
    hr, lr, sc = block(a.data, a.size)
    x4 = load_model(scale=4)
    p3d = None
    if a.predictor3d or 'x4_3d' in packaged_models():
        p3d = load_model(a.predictor3d or packaged_models()['x4_3d']['path'], 4)
        if p3d.diffusion is None: p3d.diffusion, p3d.start, p3d.tile = x4.diffusion, x4.start, x4.tile   # the x4 refiner on its fidelity
    plain = None
    if a.plain_minutes > 0:
        from bench_predict_refine import PlainCNN, train_for
        net = PlainCNN(4)
        it, s = train_for(net, 4, a.plain_minutes, 0, axes=(0, 1, 2), degradation='3d')
        print(f'plain CNN: {it} iterations of batch 16 in {s / 60:.1f} min', flush=True)
        plain = SRModel(4, net.eval().requires_grad_(False), degradation='3d')
    hs = hr[SCORED]
    t = hr_threshold(hs)   # Otsu of HR, between its grey levels (the soil is quantised)
    rows = {}
    for name, f in variants(x4, p3d, plain, lr, a.steps).items():
        sr, s = timed(f)
        rows[name] = scores(sc.inverse(sr.float().clamp(-1, 1).numpy())[SCORED], hs, t, s)
        print(f'{name}: {rows[name]["psnr"]:.2f} dB, {s:.1f} s', flush=True)
    head = (f'soil slices 80-99 (scored; computed on 64-99), {a.size}x{a.size}, LR 4x4x4 block average, {a.steps} steps; '
            f'{cpu_name()}, {a.threads} thread(s), torch {torch.__version__}; HR Euler characteristic {euler_characteristic(pore_mask(hs, t))}')
    print(head); print(table(rows))
    Path(a.out).write_text(json.dumps({'setup': head, 'rows': rows}, indent=1, default=float))


if __name__ == '__main__':
    main()
