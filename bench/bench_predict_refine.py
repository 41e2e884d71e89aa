"""Held-out benchmark of predict-and-refine (issue: a model that beats interpolation).

On the held-out blocks of the shared real micro-CT (sandstone slices 40-49; soil slices 80-99, every 4th; never trained on), LR =
block average by the scale, it scores bicubic, the packaged (or given) model's fidelity / realism / mean-of-K outputs,
any other checkpoints given with --checkpoint NAME=PATH, and optionally short training runs over several seeds of the
predictor against a plain regression CNN of equal wall time (--train-minutes). Metrics: PSNR, SSIM, porosity error,
pore-size distance (Wasserstein, voxels), two-point distance (RMS of S2), at the HR volume's Otsu threshold. Also
the speed of fidelity (slices/s) and realism (s/slice) on a 512x512 HR slice. Prints Markdown tables; --json saves them.

    python bench/bench_predict_refine.py                          # the packaged x4 model
    python bench/bench_predict_refine.py --model runs/refine_x4/checkpoints/iter_00004000.pt --train-minutes 3 --seeds 3
"""
from __future__ import annotations
import argparse, json, math, os, platform, sys, time
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from sr3xct.data import VolumePatchDataset, default_scaling
from sr3xct.resample import degrade, upsample
from sr3xct.io import read_volume
from sr3xct.metrics import compare
from sr3xct.report import curves
from sr3xct.demo import headline
from sr3xct.models import load_model
from sr3xct.infer import super_resolve
from sr3xct.predictor import Predictor, PredictorLoss
from sr3xct.losses import SR3XCTLoss

SHARED = Path(os.environ.get('SR3XCT_SHARED', Path(__file__).resolve().parents[2] / 'shared'))
BLOCKS = {'sandstone': ('sandstone_porespybinder_50x250x250_u8.tif', slice(40, 50)),     # all 10 held-out slices
          'soil': ('soil_beanbucket_pnnl_100x500x500_u8.tif', slice(80, 100, 4))}     # every 4th of the 20 held-out slices
TRAIN = {'sandstone': slice(0, 40), 'soil': slice(0, 80)}
TUNE = {'sandstone': slice(34, 38), 'soil': slice(70, 80, 4)}   # training-side slices for choosing sampler settings, never the test


def cpu_name() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def held_out(scale:int, which:dict|None=None) -> dict:
    "{block: (hr uint8 (Z, H, W) cropped to a multiple of scale, lr tensor (Z, 1, h, w) in [-1, 1], its intensity scaling)}: the scan's window of the LR, as `sr3xct infer` takes it."
    out = {}
    for name, (f, sl) in BLOCKS.items():
        if which is not None: sl = which[name]
        hr = read_volume(SHARED / 'data' / f)[0][sl]
        H, W = (hr.shape[1] // scale) * scale, (hr.shape[2] // scale) * scale
        hr = np.ascontiguousarray(hr[:, :H, :W])
        sc = default_scaling(hr, name, scale=scale)   # the window of the block's LR (what a user's LR file gets)
        out[name] = (hr, degrade(torch.from_numpy(sc.forward(hr))[:, None], scale), sc)
    return out


def to_u8(sc, x) -> np.ndarray:
    "The SR (or the first of `super_resolve`'s `(mean, std)`) as the input's grey values."
    x = x[0] if isinstance(x, tuple) else x
    return sc.inverse(x[:, 0].float().clamp(-1, 1).cpu().numpy())


def scores(images:dict, hr:np.ndarray) -> dict:
    "headline rows {metric: {method: value}} of every image against hr."
    rows = {}
    t = None
    for name, img in images.items():
        tab = compare(img, hr, threshold=t)
        t = tab['threshold']   # Otsu of HR, the same for every method
        tab['columns'] = ['sr', 'hr']
        tab['curves'] = curves({'sr': img, 'hr': hr}, t)
        for k, v in headline(tab, ('sr',)).items(): rows.setdefault(k, {})[name] = v['sr']
    return rows


def markdown(rows:dict) -> str:
    cols = list(next(iter(rows.values())))
    lines = ['| metric | ' + ' | '.join(cols) + ' |', '|---|' + '---:|' * len(cols)]
    for k, v in rows.items(): lines.append(f'| {k} | ' + ' | '.join(f'{v[c]:.4g}' if isinstance(v[c], float) else str(v[c]) for c in cols) + ' |')
    return '\n'.join(lines)


class PlainCNN(nn.Module):
    "The regression CNN a user would pick instead (VDSR-style): 3x3 convs on the bicubic upsample, residual output."
    def __init__(self, scale:int, channels:int=32, depth:int=8):
        super().__init__()
        self.scale, self.config = scale, {'scale': scale}   # `config['scale']`: what `sr3xct.infer.predict` reads
        layers = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2): layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(channels, 1, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        nn.init.zeros_(layers[-1].weight); nn.init.zeros_(layers[-1].bias)
    def forward(self, lr): b = upsample(lr, self.scale); return b + self.net(b)


def train_for(net:nn.Module, scale:int, minutes:float, seed:int, axes=(0,), degradation:str='2d') -> tuple[int, float]:
    "Train `net` with L1 + 0.05 SSIM + 0.01 multi-scale on the training blocks for `minutes` of wall time."
    torch.manual_seed(seed)
    vols = [read_volume(SHARED / 'data' / BLOCKS['sandstone'][0])[0][TRAIN['sandstone']]] * 4 + \
           [read_volume(SHARED / 'data' / BLOCKS['soil'][0])[0][TRAIN['soil']]]
    ds = VolumePatchDataset(vols, patch=96, scale=scale, length=10 ** 7, seed=seed, axes=axes, degradation=degradation)
    lossm = PredictorLoss(net, SR3XCTLoss(w_perceptual=0))
    opt = torch.optim.Adam(net.parameters(), 4e-4)
    rng = np.random.default_rng(seed)
    t0, it = time.monotonic(), 0
    while time.monotonic() - t0 < minutes * 60:
        items = [ds[int(i)] for i in rng.integers(0, len(ds), 16)]
        batch = [torch.stack([b[j] for b in items]) for j in range(3)]
        frac = (time.monotonic() - t0) / (minutes * 60)   # cosine over the wall-clock budget
        for g in opt.param_groups: g['lr'] = 4e-4 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(frac, 1))))
        loss, _ = lossm(batch)
        opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(net.parameters(), 1.0); opt.step(); it += 1
    return it, time.monotonic() - t0


@torch.no_grad()
def run_net(net, lr): net.eval(); return torch.cat([net(lr[i:i + 4]) for i in range(0, len(lr), 4)]).clamp(-1, 1)


def speed(model, scale:int, steps:int, tile:int|None=None) -> dict:
    "Fidelity slices/s and realism s/slice on one 512x512 HR slice (median of 3 / 1 runs)."
    lr = torch.rand(1, 1, 512 // scale, 512 // scale) * 2 - 1
    out = {}
    if model.predictor is not None:
        super_resolve(model, lr, scale, mode='fidelity')
        ts = []
        for _ in range(3):
            t0 = time.perf_counter(); super_resolve(model, lr, scale, mode='fidelity'); ts.append(time.perf_counter() - t0)
        out['fidelity slices/s (512^2)'] = 1 / float(np.median(ts))
    if model.diffusion is not None:
        t0 = time.perf_counter(); super_resolve(model, lr, scale, steps=steps, tile=tile, mode='realism', generator=torch.Generator().manual_seed(0))
        out[f'realism s/slice (512^2, {steps} steps)'] = time.perf_counter() - t0
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', help='model to score (default: the packaged model for --scale)')
    ap.add_argument('--scale', type=int, default=4)
    ap.add_argument('--checkpoint', action='append', default=[], metavar='NAME=PATH', help='another model to score (its default mode)')
    ap.add_argument('--steps', type=int, default=20); ap.add_argument('--n-samples', type=int, default=4)
    ap.add_argument('--tile', type=int, default=None, help="the refiner's HR tile (default: its training size)")
    ap.add_argument('--train-minutes', type=float, default=0, help='also train predictor and plain CNN this long per seed')
    ap.add_argument('--seeds', type=int, default=3); ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--skip-model', action='store_true', help='only the short training runs (with --train-minutes)')
    ap.add_argument('--json', help='write the tables here')
    ap.add_argument('--tune-start', help='comma-separated sampler starts to compare on training-side slices (not the test) first')
    a = ap.parse_args(argv)
    if not (SHARED / 'data').is_dir(): sys.exit(f'{SHARED / "data"}: not found (set SR3XCT_SHARED)')
    if a.threads: torch.set_num_threads(a.threads)
    print(f'# predict-and-refine on held-out real CT, x{a.scale}\n\n{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n')
    model = load_model(a.model, a.scale)
    if a.tune_start:
        for block, (hr, lr, sc) in held_out(a.scale, TUNE).items():
            imgs = {'fidelity': to_u8(sc, super_resolve(model, lr, a.scale, mode='fidelity'))}
            for st in (float(x) for x in a.tune_start.split(',')):
                imgs[f'start {st:g}'] = to_u8(sc, super_resolve(model, lr, a.scale, steps=a.steps, mode='realism', start=st, tile=a.tile,
                                                           generator=torch.Generator().manual_seed(0)))
            print(f'## tuning: {block} slices {TUNE[block].start}-{TUNE[block].stop - 1} (trained on), realism by start\n\n{markdown(scores(imgs, hr))}\n', flush=True)
    others = {k: load_model(v, a.scale) for k, v in (s.split('=', 1) for s in a.checkpoint)}
    data, result = held_out(a.scale), {'cpu': cpu_name(), 'scale': a.scale, 'blocks': {}}
    for block, (hr, lr, sc) in ({} if a.skip_model else data).items():
        g = lambda: torch.Generator().manual_seed(0)
        imgs = {'bicubic': to_u8(sc, upsample(lr, a.scale))}
        if 'fidelity' in model.modes: imgs['fidelity'] = to_u8(sc, super_resolve(model, lr, a.scale, mode='fidelity'))
        kw = dict(steps=a.steps, tile=a.tile, generator=g())
        imgs['realism'] = to_u8(sc, super_resolve(model, lr, a.scale, mode='realism', **kw))
        imgs[f'mean of {a.n_samples}'] = to_u8(sc, super_resolve(model, lr, a.scale, mode='mean', n_samples=a.n_samples, **kw)[0])
        for k, m in others.items(): imgs[k] = to_u8(sc, super_resolve(m, lr, a.scale, **kw))
        rows = scores(imgs, hr)
        print(f'## {block} (held out, {hr.shape[0]} slices of {hr.shape[1]}x{hr.shape[2]})\n\n{markdown(rows)}\n', flush=True)
        result['blocks'][block] = rows
    if a.train_minutes > 0:
        runs = {'predictor': lambda: Predictor(a.scale, 48, 8), 'plain CNN': lambda: PlainCNN(a.scale)}
        short = {block: {} for block in data}
        for name, make in runs.items():
            for seed in range(a.seeds):
                net = make(); it, s = train_for(net, a.scale, a.train_minutes, seed)
                for block, (hr, lr, sc) in data.items():
                    rows = scores({'x': to_u8(sc, run_net(net, lr))}, hr)
                    for k, v in rows.items(): short[block].setdefault(k, {}).setdefault(name, []).append(v['x'])
                print(f'{name} seed {seed}: {it} iterations in {s:.0f} s', flush=True)
        for block, rows in short.items():
            tab = {k: {n: f'{np.mean(v):.4g} +- {np.std(v):.2g}' for n, v in r.items()} for k, r in rows.items()}
            print(f'\n## {block}: {a.train_minutes:g}-minute runs, mean +- std over {a.seeds} seeds\n\n{markdown(tab)}\n')
        result['short_runs'] = {'minutes': a.train_minutes, 'seeds': a.seeds, 'rows': short}
    if not a.skip_model:
        sp = speed(model, a.scale, a.steps, a.tile)
        print('## speed\n\n' + '\n'.join(f'- {k}: {v:.3g}' for k, v in sp.items()))
        result['speed'] = sp
    if a.json: Path(a.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == '__main__': main()
