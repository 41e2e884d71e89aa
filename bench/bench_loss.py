#!/usr/bin/env python
"""Cost of the full SR3XCTLoss (L1 + SSIM + VGG19 perceptual + multi-scale) next to the plain L1 noise loss.

    python bench/bench_loss.py [--vgg PATH] [--reps 7] [--size 256] [--batch 2] [--no-step] [--bf16]
    python bench/bench_loss.py --parts [--step-reps 3] [--small] [--bf16]   # one training step per loss part

Forward + backward at batch 2, 256x256, on 2 CPU threads (the default). Without --vgg a random VGG19 state dict of the
real torchvision shapes is made in a temporary folder (timing does not depend on the values). Runs are interleaved
(L1, full, L1, full, ...) so that the noise of a shared machine hits both sides alike; medians and their ratio are
printed. When `sr3xct.unet` is importable, the same comparison is made for a whole training step (UNet forward and
backward through `GaussianDiffusion.p_losses`), which is the figure that matters.

--parts: only training steps, one per loss part switched on alone next to L1 (SSIM 0.05, perceptual 0.01, multi-scale
0.01, frequency 0.01), and all four (the `SR3XCTLoss` default: frequency off); interleaved, medians, ratio to L1 only.
--small: the UNet of train/16_64/small (inner_channel 16, channel_mults [1, 2, 4], norm_groups 8, attn_res [16],
res_blocks 1) at 64x64, for a check in seconds; without it the UNet default (reference) config at --size.
"""
import argparse, os, statistics, sys, tempfile, time
from pathlib import Path
import torch

from sr3xct.losses import SR3XCTLoss, VGGPerceptualLoss, vgg19_convs, vgg19_layers


def random_vgg19(path:Path, depth:int) -> Path:
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i, ci, co in vgg19_convs():
        if i <= depth:
            sd[f'features.{i}.weight'] = torch.randn(co, ci, 3, 3, generator=g) * (2 / (9 * ci)) ** .5
            sd[f'features.{i}.bias'] = torch.zeros(co)
    torch.save(sd, path)
    return path


def timed(fn, device) -> float:
    if device.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter(); fn()
    if device.type == 'cuda': torch.cuda.synchronize()
    return time.perf_counter() - t


def interleave(cases:dict, reps:int, device) -> dict:
    for fn in cases.values(): fn()  # warm-up
    times = {k: [] for k in cases}
    for _ in range(reps):
        for k, fn in cases.items(): times[k].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}


def loss_cases(full, plain, b, s, device, autocast):
    g = torch.Generator(device).manual_seed(0)
    hr = torch.rand(b, 1, s, s, generator=g, device=device) * 2 - 1
    noise = torch.randn(b, 1, s, s, generator=g, device=device)
    xt = 0.7 * hr + 0.71 * noise
    gamma = torch.full((b, 1, 1, 1), 0.7, device=device)
    def run(crit):
        def f():
            pred = (noise + 0.1 * torch.randn_like(noise)).requires_grad_()
            with autocast():
                x0 = (xt - (1 - gamma ** 2).sqrt() * pred) / gamma
                loss, _ = crit(noise, pred, x0, hr)
            loss.backward()
        return f
    return {'L1 only': run(plain), 'SR3XCTLoss': run(full)}


SMALL_UNET = dict(inner_channel=16, channel_mults=[1, 2, 4], norm_groups=8, attn_res=[16], res_blocks=1)  # train/16_64/small


def step_cases(full, plain, b, s, device, autocast, small=False, crits=None):
    from sr3xct.unet import UNet
    from sr3xct.diffusion import GaussianDiffusion
    net = UNet(image_size=s, **(SMALL_UNET if small else {})).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
    g = torch.Generator(device).manual_seed(0)
    hr = torch.rand(b, 1, s, s, generator=g, device=device) * 2 - 1
    cond = torch.rand(b, 1, s, s, generator=g, device=device) * 2 - 1
    def run(crit):
        d = GaussianDiffusion(net).to(device)
        def f():
            opt.zero_grad(set_to_none=True)
            with autocast(): loss, _ = d.p_losses(hr, cond, crit, generator=g)
            loss.backward(); opt.step()
        return f
    if crits is not None: return {k: run(c) for k, c in crits.items()}
    return {'step, L1 only': run(plain), 'step, SR3XCTLoss': run(full)}


def part_losses(perceptual) -> dict:
    "L1 alone, L1 + each image term alone, and all four (`SR3XCTLoss` default weights, frequency off)."
    off = dict(w_ssim=0, w_perceptual=0, w_multiscale=0, w_frequency=0)
    return {'L1 only': SR3XCTLoss(**off),
            'L1 + SSIM (w_ssim 0.05)': SR3XCTLoss(**{**off, 'w_ssim': 0.05}),
            'L1 + perceptual (w_perceptual 0.01)': SR3XCTLoss(**{**off, 'w_perceptual': 0.01}, perceptual=perceptual),
            'L1 + multi-scale (w_multiscale 0.01)': SR3XCTLoss(**{**off, 'w_multiscale': 0.01}),
            'L1 + frequency (w_frequency 0.01)': SR3XCTLoss(**{**off, 'w_frequency': 0.01}),
            'all four (L1 + SSIM + perceptual + multi-scale, frequency off)':
                SR3XCTLoss(w_ssim=0.05, w_perceptual=0.01, w_multiscale=0.01, w_frequency=0, perceptual=perceptual)}


def parts_table(m:dict) -> str:
    base = m['L1 only']
    out = ['| training step, loss | median (ms) | ratio to L1 only | extra |', '|---|---:|---:|---:|']
    for k, v in m.items(): out.append(f'| {k} | {v * 1e3:.1f} | {v / base:.2f} | {100 * (v - base) / base:+.0f}% |')
    return '\n'.join(out)


def table(rows:list) -> str:
    out = ['| what | L1 only (ms) | SR3XCTLoss (ms) | ratio | extra |', '|---|---:|---:|---:|---:|']
    for name, a, b in rows: out.append(f'| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {b / a:.2f} | {100 * (b - a) / a:+.0f}% |')
    return '\n'.join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--vgg', help='torchvision vgg19-dcbb9e9d.pth (default: random weights of the real shapes)')
    ap.add_argument('--reps', type=int, default=7); ap.add_argument('--step-reps', type=int, default=3)
    ap.add_argument('--size', type=int, default=None, help='image size (default 256, or 64 with --small)')
    ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--device', default='cpu')
    ap.add_argument('--no-step', action='store_true', help='skip the full training step')
    ap.add_argument('--bf16', action='store_true', help='autocast to bfloat16')
    ap.add_argument('--parts', action='store_true', help='only training steps, one loss part at a time (see above)')
    ap.add_argument('--small', action='store_true', help='the small UNet (train/16_64/small) at 64x64: a quick check')
    a = ap.parse_args(argv)
    if a.size is None: a.size = 64 if a.small else 256
    torch.set_num_threads(a.threads); device = torch.device(a.device)
    layers = ('relu1_2', 'relu2_2', 'relu3_4', 'relu4_4')  # the VGGPerceptualLoss default
    path = Path(a.vgg) if a.vgg else random_vgg19(Path(tempfile.mkdtemp()) / 'vgg19.pth', vgg19_layers()[layers[-1]])
    vgg = VGGPerceptualLoss(path, layers=layers)
    full = SR3XCTLoss(perceptual=vgg).to(device)
    plain = SR3XCTLoss(w_ssim=0, w_perceptual=0, w_multiscale=0).to(device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if a.bf16 else (lambda: torch.autocast(device.type, enabled=False))
    print(f'torch {torch.__version__}, {device}, {a.threads} threads, batch {a.batch}, {a.size}x{a.size}, '
          f'{"bf16 autocast" if a.bf16 else "fp32"}, VGG layers {layers}, UNet {"small (train/16_64/small)" if a.small else "default config"}, '
          f'medians of {a.step_reps if a.parts else a.reps} interleaved runs; load average {os.getloadavg()[0]:.2f}', flush=True)
    if a.parts:
        crits = {k: c.to(device) for k, c in part_losses(vgg).items()}
        m = interleave(step_cases(None, None, a.batch, a.size, device, autocast, a.small, crits), a.step_reps, device)
        print(parts_table(m), flush=True)
        return
    rows = []
    m = interleave(loss_cases(full, plain, a.batch, a.size, device, autocast), a.reps, device)
    rows.append(('loss forward+backward', m['L1 only'], m['SR3XCTLoss']))
    if not a.no_step:
        try: cases = step_cases(full, plain, a.batch, a.size, device, autocast, a.small)
        except ImportError as e: print(f'(no training step: {e})')
        else:
            m = interleave(cases, a.step_reps, device)
            rows.append((f'training step (UNet {"small" if a.small else "default"} config)', m['step, L1 only'], m['step, SR3XCTLoss']))
    print(table(rows), flush=True)


if __name__ == '__main__':
    sys.exit(main())
