#!/usr/bin/env python
"""Cost of the full SR3XCTLoss (L1 + SSIM + VGG19 perceptual + multi-scale) next to the plain L1 noise loss.

    python bench/bench_loss.py [--vgg PATH] [--reps 7] [--size 256] [--batch 2] [--no-step] [--bf16]

Forward + backward at batch 2, 256x256, on 2 CPU threads (the default). Without --vgg a random VGG19 state dict of the
real torchvision shapes is made in a temporary folder (timing does not depend on the values). Runs are interleaved
(L1, full, L1, full, ...) so that the noise of a shared machine hits both sides alike; medians and their ratio are
printed. When `sr3xct.unet` is importable, the same comparison is made for a whole training step (UNet forward and
backward through `GaussianDiffusion.p_losses`), which is the figure that matters.
"""
import argparse, statistics, sys, tempfile, time
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


def step_cases(full, plain, b, s, device, autocast):
    from sr3xct.unet import UNet
    from sr3xct.diffusion import GaussianDiffusion
    net = UNet(image_size=s).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
    g = torch.Generator(device).manual_seed(0)
    hr = torch.rand(b, 1, s, s, generator=g, device=device) * 2 - 1
    cond = torch.rand(b, 1, s, s, generator=g, device=device) * 2 - 1
    def run(crit):
        d = GaussianDiffusion(net, loss=crit).to(device)
        def f():
            opt.zero_grad(set_to_none=True)
            with autocast(): loss, _ = d.p_losses(hr, cond, generator=g)
            loss.backward(); opt.step()
        return f
    return {'step, L1 only': run(plain), 'step, SR3XCTLoss': run(full)}


def table(rows:list) -> str:
    out = ['| what | L1 only (ms) | SR3XCTLoss (ms) | ratio | extra |', '|---|---:|---:|---:|---:|']
    for name, a, b in rows: out.append(f'| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {b / a:.2f} | {100 * (b - a) / a:+.0f}% |')
    return '\n'.join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--vgg', help='torchvision vgg19-dcbb9e9d.pth (default: random weights of the real shapes)')
    ap.add_argument('--reps', type=int, default=7); ap.add_argument('--step-reps', type=int, default=3)
    ap.add_argument('--size', type=int, default=256); ap.add_argument('--batch', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--device', default='cpu')
    ap.add_argument('--no-step', action='store_true', help='skip the full training step')
    ap.add_argument('--bf16', action='store_true', help='autocast to bfloat16')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads); device = torch.device(a.device)
    layers = ('relu1_2', 'relu2_2', 'relu3_4', 'relu4_4')  # the VGGPerceptualLoss default
    path = Path(a.vgg) if a.vgg else random_vgg19(Path(tempfile.mkdtemp()) / 'vgg19.pth', vgg19_layers()[layers[-1]])
    full = SR3XCTLoss(perceptual=VGGPerceptualLoss(path, layers=layers)).to(device)
    plain = SR3XCTLoss(w_ssim=0, w_perceptual=0, w_multiscale=0).to(device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if a.bf16 else (lambda: torch.autocast(device.type, enabled=False))
    print(f'torch {torch.__version__}, {device}, {a.threads} threads, batch {a.batch}, {a.size}x{a.size}, '
          f'{"bf16 autocast" if a.bf16 else "fp32"}, VGG layers {layers}, medians of {a.reps} interleaved runs', flush=True)
    rows = []
    m = interleave(loss_cases(full, plain, a.batch, a.size, device, autocast), a.reps, device)
    rows.append(('loss forward+backward', m['L1 only'], m['SR3XCTLoss']))
    if not a.no_step:
        try: cases = step_cases(full, plain, a.batch, a.size, device, autocast)
        except ImportError as e: print(f'(no training step: {e})')
        else:
            m = interleave(cases, a.step_reps, device)
            rows.append(('training step (UNet default config)', m['step, L1 only'], m['step, SR3XCTLoss']))
    print(table(rows), flush=True)


if __name__ == '__main__':
    sys.exit(main())
