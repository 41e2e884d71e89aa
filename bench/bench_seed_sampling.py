"""SR3-XCT's 5000-step ancestral sampling against sr3xct's fast samplers, on a model of the SR3-XCT fixture's size.

The model is an SR3-XCT checkpoint (`I{iter}_E{epoch}` prefix with `--model-config` its YAML) or any sr3xct
checkpoint or model file of a plain (bicubic-conditioned) diffusion. With `--train-minutes N` the script first
fine-tunes the shared SR3-XCT fixture (random weights: inner_channel 16, 4-head attention, linear schedule of 5000
levels) with `sr3xct train --init` on real sandstone for N minutes, so the comparison is on a network that has
learned something. Scored on held-out sandstone (slices 45-49: the last 10% that `sr3xct train` holds out of training),
HR patches of --size (LR a quarter of it), PSNR against HR, seconds per patch (network evaluations dominate).

    python bench/bench_seed_sampling.py --train-minutes 8 --out runs/seed_bench
    python bench/bench_seed_sampling.py --checkpoint runs/seed_bench/checkpoints/iter_00000500.pt
"""
import argparse, os, platform, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch
from sr3xct.data import sandstone
from sr3xct.demo import lr_of
from sr3xct.diffusion import sample
from sr3xct.metrics import psnr, bicubic_upsample
from sr3xct.models import load_diffusion

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'seed_sr3xct'


def cpu_name() -> str:
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or 'unknown CPU'


def finetune(out: Path, minutes: float) -> Path:
    "Fine-tune the SR3-XCT fixture on sandstone for `minutes` with sr3xct's training; the newest checkpoint."
    its = int(max(1, minutes * 60 * 2.0))   # a generous bound: the run stops at the time budget below
    cmd = [sys.executable, '-m', 'sr3xct', 'train', '-c', 'train/16_64/small', '--init', str(SHARED / 'I2000_E8'),
           '--model-config', str(SHARED / 'config.yaml'), '--resume', 'auto',
           '--set', f'out_dir={out}', '--set', 'data.source=sandstone', '--set', 'data.patch=64', '--set', 'data.axes=[0]', '--set', 'data.batch_size=8',
           '--set', f'train.n_iter={its}', '--set', 'train.lr=2e-4', '--set', 'train.warmup=50', '--set', 'log.val_freq=0',
           '--set', 'log.save_freq=100', '--set', 'log.progress=false', '--set', 'log.tensorboard=false']
    proc = subprocess.Popen(cmd)
    try: proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.terminate(); proc.wait()
    cks = sorted((out / 'checkpoints').glob('iter_*.pt'))
    if not cks: sys.exit(f'{out}: no checkpoint was written in {minutes} min')
    return cks[-1]


def patches(n: int, size: int) -> np.ndarray:
    "`n` held-out `size` x `size` HR sandstone patches (slices 45-49, held out of training; a grid over each slice)."
    vol = sandstone()[0][45:50]
    out = [vol[z, y:y + size, x:x + size] for z in range(len(vol)) for y in range(0, 192, 96) for x in range(0, 192, 96)]
    return np.stack(out[:: max(1, len(out) // n)][:n])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', help='model to score (default: fine-tune the fixture with --train-minutes)')
    p.add_argument('--model-config', help='the YAML of an SR3-XCT checkpoint')
    p.add_argument('--train-minutes', type=float, default=0, help='fine-tune the SR3-XCT fixture first (needs ../shared)')
    p.add_argument('--out', default='runs/seed_bench', help='run folder of the fine-tuning')
    p.add_argument('--patches', type=int, default=8, help='held-out patches scored')
    p.add_argument('--size', type=int, default=64, help='HR patch size (a multiple of 16)')
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ck = Path(a.checkpoint) if a.checkpoint else finetune(Path(a.out), a.train_minutes) if a.train_minutes else None
    if ck is None: sys.exit('give --checkpoint, or --train-minutes to fine-tune the SR3-XCT fixture first')
    d, info = load_diffusion(ck, a.model_config)
    hr = patches(a.patches, a.size)
    lr = lr_of(hr)
    bic = bicubic_upsample(lr, 4)
    cond = torch.from_numpy(bic.astype(np.float32) / 127.5 - 1)[:, None]
    print(f'{cpu_name()}, {a.threads} threads; model {ck} ({info["format"]}, T={d.n_timestep}, {d.config["schedule"]}); '
          f'{len(hr)} held-out sandstone patches {a.size}x{a.size}, x4')
    print(f'| sampler | steps | PSNR (dB) | s per patch |\n|---|---|---|---|\n| bicubic | - | {np.mean([psnr(b, h, 255) for b, h in zip(bic, hr)]):.2f} | - |')
    runs = [('ddim', 20), ('ddim', 50), ('dpm++2m', 20), ('dpm++2m', 50), ('ddpm', 250), ('ddpm', d.n_timestep)]
    for sampler, steps in runs:
        t0 = time.perf_counter()
        out = sample(d, cond, steps, sampler, generator=torch.Generator().manual_seed(0),
                     spacing='trailing' if steps == d.n_timestep else 'logsnr')
        dt = (time.perf_counter() - t0) / len(hr)
        sr = ((out[:, 0].clamp(-1, 1).numpy() + 1) * 127.5).round().astype(np.uint8)
        label = f'{sampler} (their ancestral chain: every level)' if steps == d.n_timestep else sampler
        print(f'| {label} | {steps} | {np.mean([psnr(s, h, 255) for s, h in zip(sr, hr)]):.2f} | {dt:.2f} |', flush=True)


if __name__ == '__main__':
    main()
