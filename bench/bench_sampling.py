"""Whole 256x256 super-resolution at the SR3 reference UNet size: default sampler and steps, fp32 vs bf16 autocast.

    MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 python bench/bench_sampling.py [--steps N] [--reps R]

Prints (1) one denoising step, fp32 vs bf16, interleaved, medians and their ratio, with the bf16 x0 estimate's
relative difference from fp32 at several noise levels; (2) whole super-resolutions with the default sampler
(`sr3xct.diffusion.sample` defaults) in fp32 and bf16 (median time, ratio, and how far the bf16 result is from
the fp32 one). Weights are random (seeded): timings do not depend on them; the differences are an upper-bound
proxy for a trained net. 2 threads, batch 1. The target is a whole SR under 25 s.
"""
import argparse, inspect, os, statistics, time
import torch
from sr3xct.unet import UNet
from sr3xct.diffusion import GaussianDiffusion, sample


DEVICE = torch.device('cpu')


def timed(f):
    sync = torch.cuda.synchronize if DEVICE.type == 'cuda' else (lambda: None)
    sync(); t = time.perf_counter(); out = f(); sync(); return time.perf_counter() - t, out


def main():
    defaults = inspect.signature(sample).parameters
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--steps', type=int, default=defaults['steps'].default)
    ap.add_argument('--sampler', default=defaults['sampler'].default)
    ap.add_argument('--reps', type=int, default=2, help='whole-SR repetitions per precision (interleaved)')
    ap.add_argument('--step-reps', type=int, default=5, help='single-step repetitions per precision (interleaved)')
    ap.add_argument('--whole', default=None, help='precisions of the whole-SR runs, comma-separated (default: all)')
    ap.add_argument('--no-cross-attn', action='store_true')
    ap.add_argument('--device', default='cpu', help='cpu or cuda[:N] (on CUDA, fp16 joins the precisions)')
    a = ap.parse_args()
    global DEVICE; DEVICE = torch.device(a.device)
    torch.set_num_threads(2); torch.manual_seed(0)
    print(f'threads 2; MALLOC_MMAP_THRESHOLD_={os.environ.get("MALLOC_MMAP_THRESHOLD_", "unset")}; '
          f'load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores')
    net = UNet(in_channel=2, out_channel=1, inner_channel=64, norm_groups=32, channel_mults=(1, 2, 4, 8, 8), attn_res=(16,),
               res_blocks=2, dropout=0, image_size=256, use_cross_attn=not a.no_cross_attn).eval()
    d = GaussianDiffusion(net).to(DEVICE)
    print(f'UNet {sum(p.numel() for p in net.parameters()):,} parameters, cross-attention {not a.no_cross_attn}')
    g = torch.Generator().manual_seed(0)
    cond = (torch.rand(1, 1, 256, 256, generator=g) * 2 - 1).to(DEVICE)
    precisions = {'fp32': None, 'bf16': torch.bfloat16, **({'fp16': torch.float16} if DEVICE.type == 'cuda' else {})}
    ac = lambda dt: torch.autocast(DEVICE.type, dtype=dt or torch.bfloat16, enabled=dt is not None)

    # (1) one step, interleaved; x0 difference at several noise levels
    step = {k: [] for k in precisions}
    x0 = {}
    with torch.no_grad():
        for r in range(a.step_reps + 1):
            for k, on in precisions.items():
                for lvl in ((0.02, 0.5, 0.95, 0.999) if r == 0 else (0.5,)):
                    gamma = torch.tensor([[lvl]], device=DEVICE); xt = d.q_sample(cond, gamma, torch.randn(cond.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE))
                    with ac(on):
                        dt, eps = timed(lambda: d.eps(cond, xt, gamma))
                    if r == 0: x0[k, lvl] = d.predict_x0(xt, gamma, eps.float())
                    elif lvl == 0.5: step[k].append(dt)        # r == 0 is warm-up
    m = {k: statistics.median(v) for k, v in step.items()}
    print('\n| one denoising step | median s | ratio to fp32 |\n|---|---|---|')
    for k in precisions: print(f'| {k} | {m[k]:.3f} | {m[k] / m["fp32"]:.2f} |')
    print('\n| gamma = sqrt(alpha_bar) | rel. L2 diff of bf16 x0 estimate vs fp32 (unclipped) |\n|---|---|')
    for lvl in (0.02, 0.5, 0.95, 0.999):
        ref = x0['fp32', lvl]; print(f'| {lvl} | ' + ' / '.join(f'{k} {((x0[k, lvl] - ref).norm() / ref.norm()).item():.2e}' for k in precisions if k != 'fp32') + ' |')

    # (2) whole SR, interleaved
    wp = {k: precisions[k] for k in (a.whole.split(',') if a.whole else precisions)}
    whole = {k: [] for k in wp}; outs = {}
    for r in range(a.reps):
        for k, on in wp.items():
            with ac(on):
                dt, out = timed(lambda: sample(d, cond, a.steps, a.sampler, generator=torch.Generator(DEVICE).manual_seed(0)))
            whole[k].append(dt); outs[k] = out.float()
    mw = {k: statistics.median(v) for k, v in whole.items()}
    print(f'\n| whole 256x256 SR ({a.sampler}, {a.steps} steps) | median s | runs | s per step | under 25 s |\n|---|---|---|---|---|')
    for k in wp: print(f'| {k} | {mw[k]:.1f} | {len(whole[k])} | {mw[k] / a.steps:.3f} | {"yes" if mw[k] < 25 else "no"} |')
    for k in outs:
        if k == 'fp32' or 'fp32' not in outs: continue
        diff = (outs[k] - outs['fp32']).abs()
        print(f'\n{k} vs fp32 final SR: mean |diff| {diff.mean():.2e}, max {diff.max():.2e} (images in [-1, 1])')
    print(f'load average now {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
