#!/usr/bin/env python
"""Whole-slice super-resolution time per sampler and number of steps, beside the PSNR/SSIM each reaches (trained model).

    python bench/bench_samplers.py --checkpoint RUN/checkpoints/iter_NNNNNNNN.pt [--steps 10 20 50] [--ddpm-steps 50 100]
        [--mean-steps 20] [--mean-n 4] [--slices 4] [--size 256] [--precision auto] [--threads 2] [--device cpu]

The model is loaded with `sr3xct.models.load_diffusion` (EMA weights when there are any, as inference does) and each
slice is super-resolved alone with `sr3xct.infer.super_resolve` (blended tiles of the model's training size, the library
defaults for overlap and tiles per network call), at `--precision` (default 'auto', as `sr3xct infer`). Test sets, the
ones the demo holds out (`sr3xct.demo.demo_data`), HR cropped (centre) to --size and its LR made with
`sr3xct.demo.lr_of` (block average, x4):
- sandstone: the held-out real sandstone slices (248x248 at most: with --size 256 they stay 248x248; at tile 64 and
  overlap 32 that is as many tiles as 256x256);
- soil: synthetic soil of the demo's test seed; the demo's own set is 128x128, so above that size the same
  generator and seed are run at --size x --size (never trained on either way).
Rows: ddim (eta 0) and dpm++2m at each of --steps, ddpm at each of --ddpm-steps (an ancestral sampler: few steps are
allowed but poor), the mean of --mean-n DDIM samples (eta 1) at --mean-steps, and bicubic (`sr3xct.metrics.bicubic_upsample`).
Per row: seconds per slice (median over the slices; for each slice every row runs in turn, so a shared machine's noise
hits them alike), the ratio to DDIM at 20 steps (or the first DDIM row), and PSNR/SSIM against HR on the uint8 grey
scale (data_range 255; the SR slice is converted to uint8 as `super_resolve_volume` writes it), averaged over slices.
One Markdown table per test set. A quick end-to-end check on any checkpoint:
    python bench/bench_samplers.py --checkpoint CKPT --steps 2 --ddpm-steps 2 --mean-steps 2 --mean-n 2 --slices 1
"""
import argparse, os, statistics, sys, tempfile, time
import numpy as np
import torch

from sr3xct.demo import demo_data, lr_of, SCALE
from sr3xct.data import synthetic_soil, default_scaling
from sr3xct.io import read_volume
from sr3xct.infer import super_resolve, tile_starts
from sr3xct.models import load_diffusion
from sr3xct.metrics import psnr, ssim, bicubic_upsample
from sr3xct.runtime import Precision

DEMO_SOIL = dict(size=128, seed=12345)   # `sr3xct.demo.demo_data`'s soil test set: (test_slices, 128, 128), seed 12345


def centre_crop(vol:np.ndarray, size:int, scale:int) -> np.ndarray:
    "Crop the last two axes to min(size, side), rounded down to a multiple of `scale`, about the centre."
    h, w = [min(size, n) // scale * scale for n in vol.shape[-2:]]
    y, x = (vol.shape[-2] - h) // 2, (vol.shape[-1] - w) // 2
    return np.ascontiguousarray(vol[..., y:y + h, x:x + w])


def test_sets(folder, n:int, size:int, scale:int) -> dict:
    "{name: (hr uint8 (n, H, W), lr uint8 (n, H/scale, W/scale), note)}."
    data = demo_data(folder, test_slices=n)
    out = {}
    hr = centre_crop(read_volume(data['tests']['sandstone']['hr'])[0], size, scale)
    out['sandstone'] = (hr, 'held-out real sandstone slices of the demo')
    if size <= DEMO_SOIL['size']:
        hr = centre_crop(read_volume(data['tests']['soil']['hr'])[0], size, scale)
        out['soil'] = (hr, "the demo's synthetic soil test slices")
    else:
        hr = centre_crop(synthetic_soil((n, size, size), seed=DEMO_SOIL['seed']), size, scale)
        out['soil'] = (hr, f"synthetic soil of the demo's test seed {DEMO_SOIL['seed']}, generated at {size}x{size} "
                           f"(the demo's own set is {DEMO_SOIL['size']}x{DEMO_SOIL['size']})")
    return {k: (hr, lr_of(hr, scale), note) for k, (hr, note) in out.items()}


def rows_of(a) -> list:
    "(label, sampler, steps, eta, n_samples) for every SR row."
    rows = []
    for s in a.steps: rows.append((f'ddim {s}', 'ddim', s, 0.0, 1))
    for s in a.steps: rows.append((f'dpm++2m {s}', 'dpm++2m', s, 0.0, 1))
    for s in a.ddpm_steps: rows.append((f'ddpm {s}', 'ddpm', s, 0.0, 1))
    if a.mean_n > 0: rows.append((f'ddim mean of {a.mean_n} (eta 1) {a.mean_steps}', 'ddim', a.mean_steps, 1.0, a.mean_n))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--checkpoint', required=True, help='a trained sr3xct checkpoint (e.g. the demo\'s run/checkpoints/iter_*.pt)')
    ap.add_argument('--scale', type=int, default=SCALE, help='checked against the checkpoint (default %(default)s, the demo\'s)')
    ap.add_argument('--steps', type=int, nargs='+', default=[10, 20, 50], help='steps for ddim and dpm++2m')
    ap.add_argument('--ddpm-steps', type=int, nargs='*', default=[50, 100], help='steps for ddpm (none: no ddpm rows)')
    ap.add_argument('--mean-steps', type=int, default=20, help='steps of the mean-of-N DDIM row')
    ap.add_argument('--mean-n', type=int, default=4, help='samples of the mean-of-N DDIM row (0: no such row)')
    ap.add_argument('--slices', type=int, default=4, help='held-out slices per test set (1..10; the demo uses 4)')
    ap.add_argument('--size', type=int, default=256, help='HR crop size (the sandstone slices are 248x248 at most)')
    ap.add_argument('--sets', nargs='+', default=['sandstone', 'soil'], choices=['sandstone', 'soil'])
    ap.add_argument('--precision', default='auto', choices=['auto', 'fp32', 'bf16', 'fp16'])
    ap.add_argument('--tile', type=int, default=None, help='HR tile (default: the model\'s image_size)')
    ap.add_argument('--overlap', type=int, default=32); ap.add_argument('--batch-size', type=int, default=4, help='tiles per network call')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads); device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    d, info = load_diffusion(a.checkpoint, scale=a.scale, device=device)
    scale = info['scale']
    tile = a.tile or info['image_size']
    prec = Precision(a.precision, device).kind
    rows = rows_of(a)
    with tempfile.TemporaryDirectory() as tmp: sets = test_sets(tmp, a.slices, a.size, scale)
    sets = {k: v for k, v in sets.items() if k in a.sets}
    print(f'torch {torch.__version__}, {device}, {a.threads} threads, precision {a.precision} -> {prec}; checkpoint {a.checkpoint} '
          f'({info["format"]}, {info["weights"]} weights, {sum(p.numel() for p in d.model.parameters()):,} parameters, '
          f'image_size {info["image_size"]}, x{scale}); diffusion {d.config}; tile {tile}, overlap {min(a.overlap, tile // 2)}, '
          f'{a.batch_size} tiles per call; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores', flush=True)

    # warm-up (first-call allocations, kernel selection): one tile, one step
    super_resolve(d, torch.zeros(1, 1, tile // scale, tile // scale), scale, tile=tile, overlap=min(a.overlap, tile // 2), batch_size=a.batch_size,
                  steps=1, generator=torch.Generator(device).manual_seed(0), precision=a.precision)
    tables = []
    for name, (hr, lr, note) in sets.items():
        sc = default_scaling(lr, name)                                   # the LR's window, as `sr3xct infer` takes it
        lr_t = sc.forward(torch.from_numpy(lr))[:, None]                # (n, 1, h, w) in [-1, 1]
        secs = {r[0]: [] for r in rows}; secs['bicubic'] = []
        outs = {r[0]: np.empty_like(hr) for r in rows}
        for i in range(len(hr)):
            t = time.perf_counter(); bic = bicubic_upsample(lr[i], scale); secs['bicubic'].append(time.perf_counter() - t)
            if i == 0: outs['bicubic'] = np.empty(hr.shape, bic.dtype)
            outs['bicubic'][i] = bic
            for label, sampler, steps, eta, n in rows:
                g = torch.Generator(device).manual_seed(a.seed * 1000 + i)
                sync(); t = time.perf_counter()
                sr, _ = super_resolve(d, lr_t[i:i + 1], scale, tile=tile, overlap=min(a.overlap, tile // 2), batch_size=a.batch_size,
                                      steps=steps, sampler=sampler, eta=eta, n_samples=n, generator=g, precision=a.precision)
                sync(); secs[label].append(time.perf_counter() - t)
                outs[label][i] = sc.inverse(sr[0, 0].float().cpu().numpy())
                print(f'  {name} slice {i}: {label:28s} {secs[label][-1]:8.2f} s', flush=True)
        med = {k: statistics.median(v) for k, v in secs.items()}
        ref = next((r[0] for r in rows if r[1] == 'ddim' and r[2] == 20 and r[4] == 1), next((r[0] for r in rows if r[1] == 'ddim'), None))
        H, W = [max(n, tile) for n in hr.shape[-2:]]
        n_tiles = len(tile_starts(H, tile, min(a.overlap, tile // 2))) * len(tile_starts(W, tile, min(a.overlap, tile // 2)))
        lines = [f'\n{name}: {note}; {len(hr)} slices, HR {hr.shape[1]}x{hr.shape[2]} uint8, LR {lr.shape[1]}x{lr.shape[2]}, '
                 f'{n_tiles} tiles per slice; precision {prec}; load average {os.getloadavg()[0]:.2f}\n',
                 f'| {name} | sampler | steps | network evaluations per tile | s per slice (median) | vs {ref or "-"} | PSNR (dB) | SSIM |',
                 '|---|---|---:|---:|---:|---:|---:|---:|']
        for label, sampler, steps, eta, n in [('bicubic', '-', 0, 0, 0)] + rows:
            p, s = psnr(outs[label], hr, 255), ssim(outs[label], hr, 255)
            vs = f'{med[label] / med[ref]:.2f}' if ref else '-'
            samp = sampler if sampler != 'ddim' else f'ddim eta {eta:g}'
            lines.append(f'| {label} | {samp} | {steps or "-"} | {steps * n or "-"} | {med[label]:.3f} | {vs} | {p:.2f} | {s:.4f} |')
        tables.append('\n'.join(lines))
        print(tables[-1], flush=True)
    print(f'\nload average at the end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    sys.exit(main())
