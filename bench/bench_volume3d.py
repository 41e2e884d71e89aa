"""Isotropic fidelity on a held-out real block: tricubic vs the packaged x4 predictor on (Y, X) planes only vs the
two planes that contain Z vs the mean of all three orientations (`sr3xct.volume3d.fidelity3d`).

    python bench/bench_volume3d.py [--size 500] [--threads 1] [--out bench/volume3d.json]

Data: `../shared/data/soil_beanbucket_pnnl_100x500x500_u8.tif` (see its NOTICE.md). Blocks: its last 36 slices (64-99;
the packaged model trained on (Y, X) planes of slices 0-79, so 16 of these slices were seen in-plane, though never
with a 3D degradation) and its last 20 slices (80-99, never seen), cropped to the central `size` x `size`.
LR = `degrade3d(HR, 4)` (4x4x4 block average), rounded to 8 bits like a stored scan. Outputs rounded to uint8.
Reported: PSNR over the whole volume (pooled MSE), mean PSNR over (Y, X), (Z, X) and (Z, Y) planes
(`sr3xct.metrics.plane_psnr`), the fraction of power above half the Nyquist frequency along Z and X
(`sr3xct.metrics.hf_power_fraction`) and their ratio against HR's, and the time (HR voxels/s). Also the largest
difference (grey levels) between the slab-streamed fidelity and the whole-volume one for a few halo widths.
"""
import argparse, json, time
from pathlib import Path
import numpy as np
import torch
from sr3xct.io import read_volume
from sr3xct.resample import degrade3d, upsample3d
from sr3xct.data import default_scaling
from sr3xct.metrics import plane_psnr, hf_power_fraction
from sr3xct.models import load_model
from sr3xct.volume3d import fidelity3d

VARIANTS = {'tricubic': None, 'yx + cubic Z': ('yx',), 'zx+zy': ('zx', 'zy'), 'mean of 3': ('yx', 'zx', 'zy')}


def block(vol, z0, size):
    y0 = (vol.shape[1] - size) // 2 // 4 * 4
    return np.ascontiguousarray(vol[z0:, y0:y0 + size, y0:y0 + size])


def scores(sr, hr, t):
    g = lambda v, a: hf_power_fraction(v, a)
    mse = ((sr.astype(np.float64) - hr) ** 2).mean()
    return dict(psnr=10 * np.log10(255 ** 2 / mse), psnr_yx=plane_psnr(sr, hr, 255, 0), psnr_zx=plane_psnr(sr, hr, 255, 1),
                psnr_zy=plane_psnr(sr, hr, 255, 2), hf_z=g(sr, 0), hf_x=g(sr, 2), z_over_x=g(sr, 0) / g(sr, 2),
                vs_hr=(g(sr, 0) / g(sr, 2)) / (g(hr, 0) / g(hr, 2)), seconds=t, voxels_per_s=sr.size / t)


def run(hr, model, sc):
    x = torch.from_numpy(sc.forward(hr))
    lr = torch.from_numpy(sc.forward(sc.inverse(degrade3d(x, 4).numpy())))   # 8-bit LR, as a stored scan
    out = {}
    for name, o in VARIANTS.items():
        t0 = time.perf_counter()
        sr = upsample3d(lr, 4) if o is None else fidelity3d(model, lr, 4, o, precision='fp32')
        t = time.perf_counter() - t0
        out[name] = scores(sc.inverse(sr.numpy()), hr, t)
    hrs = dict(hf_z=hf_power_fraction(hr, 0), hf_x=hf_power_fraction(hr, 2)); hrs['z_over_x'] = hrs['hf_z'] / hrs['hf_x']
    out['HR'] = hrs
    return out, lr


def halo_check(lr, model, slab=4):
    "Largest |slab-streamed - whole| (grey levels, before rounding) for each halo."
    whole = fidelity3d(model, lr, 4, precision='fp32')
    res = {}
    for halo in (2, 4, 8, 12):
        parts = [fidelity3d(model, lr[max(lo - halo, 0):lo + slab + halo], 4, keep=slice(lo - max(lo - halo, 0), lo - max(lo - halo, 0) + min(slab, len(lr) - lo)), precision='fp32')
                 for lo in range(0, len(lr), slab)]
        res[halo] = float((torch.cat(parts) - whole).abs().max()) * 127.5
    return res


def table(rows):
    cols = ['psnr', 'psnr_yx', 'psnr_zx', 'psnr_zy', 'hf_z', 'hf_x', 'z_over_x', 'vs_hr', 'voxels_per_s']
    lines = ['| variant | ' + ' | '.join(cols) + ' |', '|---|' + '---:|' * len(cols)]
    for k, r in rows.items():
        lines.append(f'| {k} | ' + ' | '.join(f'{r[c]:.4g}' if c in r else '' for c in cols) + ' |')
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', type=int, default=500); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default='bench/volume3d.json')
    ap.add_argument('--data', default=str(Path(__file__).resolve().parents[1].parent / 'shared/data/soil_beanbucket_pnnl_100x500x500_u8.tif'))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    vol, _ = read_volume(a.data)
    model = load_model(scale=4)
    res = {}
    for name, z0 in (('last 36 slices (64-99)', 64), ('last 20 slices (80-99, never trained on)', 80)):
        hr = block(vol, z0, a.size)
        res[name], lr = run(hr, model, default_scaling(hr, scale=4, degradation='3d'))   # the LR's window, as `sr3xct infer` takes it
        print(f'\n### {name}, HR {hr.shape}\n\n' + table(res[name]), flush=True)
        if z0 == 64:
            res['halo'] = halo_check(lr, model)
            print('\nslab-streamed vs whole, max |diff| grey levels by halo:', res['halo'], flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == '__main__': main()
