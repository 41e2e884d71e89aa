"""Any scan as it is stored (issue 23): the packaged models on held-out real CT stored and degraded the ways users' scans are.

Held-out blocks (never trained on): sandstone slices 40-49, soil slices 80-99 (every 4th, `--soil-step`). The HR is the
8-bit scan; LR is made from it by (a) the block average, (b) a Gaussian PSF (sigma 1.5 HR px) then the block average plus
noise sd 2, (c) the block average plus noise sd 4 (grey levels of the 8-bit scale), and stored as a user's file would be:

- storage table, LR (a) rounded to 8 bits and stored as uint8, uint16 (x257), uint16 in a narrow window (20000 + 40 v),
  int16 with a negative offset (7 v - 1500) and float32 (attenuation-like 0.01 + 0.03 v / 255): PSNR of each output,
  mapped back to the 8-bit scale, against the 8-bit result (goal: within 0.05 dB) and the largest difference in grey levels;
- degradation table, LR (a), (b), (c) stored as 8-bit and as narrow-window 16-bit (20000 + 40 v, v not rounded first):
  fidelity against bicubic (goal: +1.5 dB soil, +0.75 dB sandstone);
- porosity table (`--realism`), LR (a) as 8-bit: bicubic, fidelity, realism (one sample, seed 0): porosity error at the
  HR's Otsu threshold (moved to the middle of the gap between the HR's grey levels: `sr3xct.metrics.hr_threshold`) and with Otsu on
  each output (the SR's own, against the HR's at its threshold), pore-size distance (Wasserstein of local-thickness distributions,
  voxels), two-point distance, Euler-characteristic error (relative).

Everything goes through `sr3xct.super_resolve_array`, exactly as a user's array would.

    python bench/bench_intensity.py --scale 4 [--realism] [--model FILE] [--json out.json]
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from sr3xct.io import read_volume
from sr3xct.metrics import psnr, otsu_threshold, hr_threshold, euler_characteristic, bicubic_upsample
from sr3xct.report import curves
from sr3xct.demo import headline
from sr3xct.models import load_model
from sr3xct.arrays import super_resolve_array

SHARED = Path(os.environ.get('SR3XCT_SHARED', Path(__file__).resolve().parents[2] / 'shared'))
BLOCKS = {'soil': ('soil_beanbucket_pnnl_100x500x500_u8.tif', 80, 100), 'sandstone': ('sandstone_porespybinder_50x250x250_u8.tif', 40, 50)}
TUNE = {'soil': ('soil_beanbucket_pnnl_100x500x500_u8.tif', 70, 80), 'sandstone': ('sandstone_porespybinder_50x250x250_u8.tif', 34, 38)}   # trained on: for choosing, never the test
GAIN_GOAL = {'soil': 1.5, 'sandstone': 0.75}
# storage name -> (dtype, a, b): stored = a * v + b for 8-bit grey value v
STORAGES = {'uint8': ('uint8', 1.0, 0.0), 'uint16 x257': ('uint16', 257.0, 0.0), 'uint16 narrow': ('uint16', 40.0, 20000.0),
            'int16 offset': ('int16', 7.0, -1500.0), 'float32': ('float32', 0.03 / 255, 0.01)}


def cpu_name() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def held_out(name:str, scale:int, step:int, blocks:dict=BLOCKS) -> np.ndarray:
    "The held-out HR block (Z, H, W) as float64 8-bit grey values, cropped to a multiple of `scale`."
    f, a, b = blocks[name]
    hr = read_volume(SHARED / 'data' / f)[0][a:b:step if name == 'soil' else 1]
    H, W = hr.shape[1] // scale * scale, hr.shape[2] // scale * scale
    return hr[:, :H, :W].astype(np.float64)


def block_average(hr:np.ndarray, s:int) -> np.ndarray:
    Z, H, W = hr.shape
    return hr.reshape(Z, H // s, s, W // s, s).mean((2, 4))


def degraded(hr:np.ndarray, s:int, kind:str, seed:int=0) -> np.ndarray:
    "LR in 8-bit grey values (float): (a) block average, (b) PSF 1.5 + block average + noise 2, (c) block average + noise 4."
    rng = np.random.default_rng(seed)
    if kind == 'a': return block_average(hr, s)
    if kind == 'b': return block_average(np.stack([gaussian_filter(z, 1.5) for z in hr]), s) + rng.normal(0, 2, (hr.shape[0], hr.shape[1] // s, hr.shape[2] // s))
    if kind == 'c': return block_average(hr, s) + rng.normal(0, 4, (hr.shape[0], hr.shape[1] // s, hr.shape[2] // s))
    raise ValueError(kind)


def store(v:np.ndarray, storage:str) -> np.ndarray:
    "`v` (8-bit grey values, float) as that storage writes it (rounded and clipped for integers)."
    dt, a, b = STORAGES[storage]
    x = a * v + b
    if dt == 'float32': return x.astype(np.float32)
    info = np.iinfo(dt)
    return np.clip(np.rint(x), info.min, info.max).astype(dt)


def unstore(x:np.ndarray, storage:str) -> np.ndarray:
    "Stored grey values back on the 8-bit scale, clipped to it (a wider dtype may hold SR values beyond 255)."
    dt, a, b = STORAGES[storage]
    return np.clip((x.astype(np.float64) - b) / a, 0, 255)


def run(model, lr_stored:np.ndarray, storage:str, scale:int, mode:str='fidelity') -> np.ndarray:
    "SR through the public array API, back on the 8-bit scale."
    return unstore(super_resolve_array(lr_stored, scale, mode, checkpoint=model, seed=0), storage)


def soil_stats(img:np.ndarray, hr:np.ndarray) -> dict:
    "Porosity errors (HR's Otsu, own Otsu), pore-size and two-point distances, Euler error of `img` against `hr`."
    t = hr_threshold(hr)
    m_sr, m_hr = img <= t, hr <= t
    tab = {'metrics': {'psnr': {'sr': 0.0}, 'ssim': {'sr': 0.0}, 'porosity': {'sr': m_sr.mean(), 'hr': m_hr.mean()}},
           'curves': curves({'sr': m_sr, 'hr': m_hr}, t)}
    h = headline(tab, ('sr',))
    e_sr, e_hr = euler_characteristic(m_sr), euler_characteristic(m_hr)
    return {'porosity error (HR Otsu)': abs(m_sr.mean() - m_hr.mean()),
            'porosity error (own Otsu)': abs((img <= otsu_threshold(img)).mean() - m_hr.mean()),
            'pore-size distance': h['pore-size distance (voxels)']['sr'], 'two-point distance': h['two-point distance']['sr'],
            'Euler error (rel.)': abs(e_sr - e_hr) / max(abs(e_hr), 1)}


def storage_table(model, hr:dict, scale:int) -> dict:
    rows = {}
    for name, h in hr.items():
        lr8 = np.clip(np.rint(degraded(h, scale, 'a')), 0, 255)   # the 8-bit LR every storage holds
        ref = run(model, store(lr8, 'uint8'), 'uint8', scale)
        p_ref = psnr(ref, h, 255)
        for st in STORAGES:
            out = ref if st == 'uint8' else run(model, store(lr8, st), st, scale)
            rows.setdefault(st, {})[name] = (psnr(out, h, 255) - p_ref, float(np.abs(out - ref).max()))
    return rows


def degradation_table(model, hr:dict, scale:int) -> dict:
    rows = {}
    for kind in 'abc':
        for st in ('uint8', 'uint16 narrow'):
            for name, h in hr.items():
                v = degraded(h, scale, kind)
                x = store(v, st)
                bic = bicubic_upsample(unstore(x, st), scale)
                fid = run(model, x, st, scale)
                rows.setdefault(f'({kind}) {st}', {})[name] = (psnr(np.clip(bic, 0, 255), h, 255), psnr(fid, h, 255))
    return rows


def porosity_table(model, hr:dict, scale:int, realism:bool) -> dict:
    out = {}
    for name, h in hr.items():
        x = store(np.clip(np.rint(degraded(h, scale, 'a')), 0, 255), 'uint8')
        imgs = {'bicubic': np.clip(bicubic_upsample(x, scale).astype(np.float64), 0, 255), 'fidelity': run(model, x, 'uint8', scale)}
        if realism:
            t0 = time.perf_counter(); imgs['realism'] = run(model, x, 'uint8', scale, 'realism'); out[f'{name} realism s'] = time.perf_counter() - t0
        out[name] = {k: {'PSNR (dB)': psnr(v, h, 255), **soil_stats(v, h)} for k, v in imgs.items()}
    return out


def fmt_storage(rows:dict) -> str:
    names = list(next(iter(rows.values())))
    lines = ['| storage | ' + ' | '.join(f'{n}: dB vs 8-bit | {n}: max grey diff' for n in names) + ' |', '|---|' + '---:|' * 2 * len(names)]
    for st, v in rows.items(): lines.append(f'| {st} | ' + ' | '.join(f'{v[n][0]:+.3f} | {v[n][1]:.2f}' for n in names) + ' |')
    return '\n'.join(lines)


def fmt_degradation(rows:dict) -> str:
    names = list(next(iter(rows.values())))
    lines = ['| LR | ' + ' | '.join(f'{n}: bicubic | {n}: fidelity | {n}: gain (goal {GAIN_GOAL[n]})' for n in names) + ' |', '|---|' + '---:|' * 3 * len(names)]
    for k, v in rows.items(): lines.append(f'| {k} | ' + ' | '.join(f'{v[n][0]:.2f} | {v[n][1]:.2f} | {v[n][1] - v[n][0]:+.2f}' for n in names) + ' |')
    return '\n'.join(lines)


def fmt_porosity(tab:dict) -> str:
    out = []
    for name, cols in tab.items():
        if not isinstance(cols, dict): continue
        ms = list(next(iter(cols.values())))
        lines = [f'**{name}**', '', '| metric | ' + ' | '.join(cols) + ' |', '|---|' + '---:|' * len(cols)]
        for m in ms: lines.append(f'| {m} | ' + ' | '.join(f'{cols[c][m]:.4g}' for c in cols) + ' |')
        out.append('\n'.join(lines))
    return '\n\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--scale', type=int, default=4, choices=[2, 4, 8])
    ap.add_argument('--model', help='a model file or checkpoint (default: the packaged model for --scale)')
    ap.add_argument('--realism', action='store_true', help='also the porosity table with one realism sample (slow)')
    ap.add_argument('--soil-step', type=int, default=4, help='every n-th held-out soil slice (default 4: 5 slices)')
    ap.add_argument('--tables', default='storage,degradation,porosity')
    ap.add_argument('--tune', action='store_true', help='score training-side slices (sandstone 34-37, soil 70-79) instead: for choosing a model or setting')
    ap.add_argument('--json', help='save every figure here')
    a = ap.parse_args()
    if not (SHARED / 'data').is_dir(): sys.exit(f'{SHARED / "data"}: not found (set SR3XCT_SHARED)')
    model = load_model(a.model, a.scale)
    hr = {n: held_out(n, a.scale, a.soil_step, TUNE if a.tune else BLOCKS) for n in BLOCKS}
    print(f'# bench_intensity: x{a.scale}, model {model.info.get("path")}; {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}')
    res, tables = {}, a.tables.split(',')
    if 'storage' in tables:
        res['storage'] = storage_table(model, hr, a.scale); print('\n## Storage (LR (a) as 8 bits, stored five ways)\n\n' + fmt_storage(res['storage']))
    if 'degradation' in tables:
        res['degradation'] = degradation_table(model, hr, a.scale); print('\n## Degradation: fidelity against bicubic (PSNR dB)\n\n' + fmt_degradation(res['degradation']))
    if 'porosity' in tables:
        res['porosity'] = porosity_table(model, hr, a.scale, a.realism); print('\n## Porosity and pore statistics (LR (a), 8-bit)\n\n' + fmt_porosity(res['porosity']))
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1, default=float))


if __name__ == '__main__':
    main()
