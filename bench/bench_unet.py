"""One denoising step of the sr3xct UNet at the SR3 reference size: float32 vs bf16 autocast, with and without
cross-attention, NCHW vs channels_last; time (median of interleaved repeats), peak memory, and the bf16 error.

    python bench/bench_unet.py [--repeats 5] [--size 256] [--no-memory] [--device cuda]

On CUDA, the bf16 variants use CUDA autocast, fp16 variants are added, and memory is the allocator's peak during a step.

SR3 reference size: inner_channel 64, channel_mults [1,2,4,8,8], attn_res [16], res_blocks 2, 256x256, batch 1,
2 threads. A step = the network's forward (no grad) plus the x0 estimate `(x_t - sqrt(1-g^2) eps) / g`.
Timings on a shared machine are noisy: compare the ratios, which come from the same interleaved run.
Peak memory is measured in a fresh child process per variant: the peak RSS is reset (Linux /proc/self/clear_refs)
after the model is built, so 'step +MiB' is what one step adds over the model's resident weights.
"""
import argparse, os, resource, subprocess, sys, time, json
from statistics import median

# glibc gives large buffers back to the OS after each step by default, which slows 256x256 steps; use the same
# (raised) thresholds for every variant. Set before Python starts, so re-exec once.
_MALLOC = {'MALLOC_MMAP_THRESHOLD_': str(2**31), 'MALLOC_TRIM_THRESHOLD_': str(2**31)}
if any(os.environ.get(k) != v for k, v in _MALLOC.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_MALLOC})

import torch
from sr3xct.unet import UNet, CrossAttention

SR3 = dict(inner_channel=64, channel_mults=[1, 2, 4, 8, 8], attn_res=[16], res_blocks=2, image_size=256)
VARIANTS = {  # name: (use_cross_attn, bf16, channels_last)
    'plain fp32': (False, False, False), 'plain fp32 CL': (False, False, True),
    'plain bf16': (False, True, False), 'plain bf16 CL': (False, True, True),
    'cross fp32': (True, False, False), 'cross fp32 CL': (True, False, True),
    'cross bf16': (True, True, False), 'cross bf16 CL': (True, True, True),
}
CUDA_VARIANTS = {'plain fp16': (False, 'fp16', False), 'cross fp16': (True, 'fp16', False)}
DEVICE = 'cpu'


def sync():
    if DEVICE.startswith('cuda'): torch.cuda.synchronize()


def build(cross:bool, seed=0):
    torch.manual_seed(seed)
    m = UNet(**SR3, use_cross_attn=cross).eval().to(DEVICE)
    for mod in m.modules():   # a trained model's cross-attention is not the identity: give it weights
        if isinstance(mod, CrossAttention): torch.nn.init.normal_(mod.out.weight, std=0.02)
    return m


def inputs(size, gamma, seed=1):
    g = torch.Generator().manual_seed(seed)
    cond = torch.nn.functional.interpolate(torch.rand(1, 1, size // 8, size // 8, generator=g) * 2 - 1, size=(size, size),
                                           mode='bicubic').clamp(-1, 1)
    x0 = cond + 0.1 * torch.randn(1, 1, size, size, generator=g)
    gam = torch.full((1, 1), gamma)
    x_t = gam.view(-1, 1, 1, 1) * x0 + (1 - gam**2).sqrt().view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=g)
    return torch.cat([cond, x_t], 1).to(DEVICE), gam.to(DEVICE)


def step(m, x, gam, bf16:bool, cl:bool):
    "One denoising step's network work: predicted noise and the x0 estimate (float32)."
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.float16 if bf16 == 'fp16' else torch.bfloat16
    with torch.inference_mode(), torch.autocast(DEVICE.split(':')[0], dtype=dtype, enabled=bool(bf16)):
        eps = m(x, gam).float()
    g = gam.view(-1, 1, 1, 1)
    return eps, (x[:, -1:] - (1 - g**2).sqrt() * eps) / g


def memory_child(name, size):
    "Run in a fresh process: peak RSS growth of one step (MiB) and the total peak RSS (MiB)."
    cross, bf16, cl = VARIANTS[name]
    torch.set_num_threads(2)
    m = build(cross)
    if cl: m = m.to(memory_format=torch.channels_last)
    x, gam = inputs(size, 0.5)
    rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    base = rss()
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')   # reset the peak RSS to the current RSS (Linux)
    step(m, x, gam, bf16, cl)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({'base': base, 'peak': peak}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--only', nargs='*', default=None, help='variant names to run (default: all)')
    ap.add_argument('--no-memory', action='store_true')
    ap.add_argument('--memory-child', help=argparse.SUPPRESS)
    ap.add_argument('--device', default='cpu')
    a = ap.parse_args()
    global DEVICE; DEVICE = a.device
    if a.device.startswith('cuda'): VARIANTS.update(CUDA_VARIANTS)
    if a.memory_child: return memory_child(a.memory_child, a.size)
    torch.set_num_threads(2)
    names = a.only or list(VARIANTS)
    models = {}
    for cross in sorted({VARIANTS[n][0] for n in names}):
        m = build(cross)
        models[(cross, False)] = m
        if any(VARIANTS[n][2] for n in names if VARIANTS[n][0] == cross):
            models[(cross, True)] = build(cross).to(memory_format=torch.channels_last)
    n_par = {c: sum(p.numel() for p in build(c).parameters()) for c in sorted({VARIANTS[n][0] for n in names})}
    x, gam = inputs(a.size, 0.5)
    for n in names: step(models[VARIANTS[n][0], VARIANTS[n][2]], x, gam, VARIANTS[n][1], VARIANTS[n][2])  # warm-up
    times = {n: [] for n in names}
    for _ in range(a.repeats):                     # interleaved: every variant sees the same machine load
        for n in names:
            cross, bf16, cl = VARIANTS[n]
            sync(); t = time.perf_counter(); step(models[cross, cl], x, gam, bf16, cl); sync(); times[n].append(time.perf_counter() - t)
        print('times so far:', {n: round(v[-1], 3) for n, v in times.items()}, flush=True)

    # bf16 error against float32 (same model, same input) at three noise levels
    err = {}
    for n in names:
        cross, bf16, cl = VARIANTS[n]
        if not bf16: continue
        rows = []
        for gamma in (0.3, 0.7, 0.95):
            xg, gg = inputs(a.size, gamma)
            e32, x32 = step(models[cross, False], xg, gg, False, False)
            e16, x16 = step(models[cross, cl], xg, gg, bf16, cl)
            rows.append(((x16 - x32).norm() / x32.norm()).item())
        err[n] = rows
    # channels_last must not change float32 results beyond rounding
    layout_diff = {}
    for cross in sorted({VARIANTS[n][0] for n in names if VARIANTS[n][2]}):
        e1, _ = step(models[cross, False], x, gam, False, False); e2, _ = step(models[cross, True], x, gam, False, True)
        layout_diff[cross] = ((e1 - e2).norm() / e1.norm()).item()

    mem = {}
    if not a.no_memory and DEVICE.startswith('cuda'):
        for n in names:
            cross, bf16, cl = VARIANTS[n]
            torch.cuda.synchronize(); base = torch.cuda.memory_allocated() / 2**20; torch.cuda.reset_peak_memory_stats()
            step(models[cross, cl], x, gam, bf16, cl); torch.cuda.synchronize()
            mem[n] = {'base': base, 'peak': torch.cuda.max_memory_allocated() / 2**20}
    elif not a.no_memory:
        for n in names:
            out = subprocess.run([sys.executable, __file__, '--memory-child', n, '--size', str(a.size)],
                                 capture_output=True, text=True, check=True).stdout
            mem[n] = json.loads(out.strip().splitlines()[-1])

    ref = {c: times[f'{"cross" if c else "plain"} fp32'] for c in (False, True) if f'{"cross" if c else "plain"} fp32' in times}
    where = torch.cuda.get_device_name() if DEVICE.startswith('cuda') else f'{torch.get_num_threads()} threads'
    print(f'\nUNet step at {a.size}x{a.size}, batch 1, {where}, torch {torch.__version__}; '
          f'params: ' + ', '.join(f'{"cross" if c else "plain"} {p:,}' for c, p in n_par.items()))
    print('"vs fp32": ratio of medians (ratio of minima) to the same model\'s NCHW float32 step')
    print(f'{"variant":15s} {"median s":>9s} {"min s":>7s} {"vs fp32":>15s} {"peak MiB":>13s} {"step +MiB":>10s}  x0 rel. diff bf16/fp16 vs fp32 (g=.3/.7/.95)')
    if DEVICE.startswith('cuda'): print('(peak MiB: the CUDA allocator; weights of all models built in this process included in base)')
    for n in names:
        cross = VARIANTS[n][0]
        md = median(times[n])
        r = f'{md / median(ref[cross]):.3f} ({min(times[n]) / min(ref[cross]):.3f})' if cross in ref else ''
        mm = mem.get(n)
        ms = f'{mm["peak"]:13.0f} {mm["peak"] - mm["base"]:10.0f}' if mm else f'{"":13s} {"":10s}'
        es = ' / '.join(f'{e:.1e}' for e in err[n]) if n in err else ''
        print(f'{n:15s} {md:9.3f} {min(times[n]):7.3f} {r:>15s} {ms}  {es}')
    for kind in ('fp32', 'bf16', 'fp32 CL', 'bf16 CL'):
        p, q = f'plain {kind}', f'cross {kind}'
        if p in times and q in times:
            extra = ''
            if p in mem and q in mem: extra = f', peak RSS +{mem[q]["peak"] - mem[p]["peak"]:.0f} MiB'
            print(f'cross-attention cost ({kind}): time x{median(times[q]) / median(times[p]):.3f} (minima x{min(times[q]) / min(times[p]):.3f}){extra}')
    for c, d in layout_diff.items(): print(f'channels_last vs NCHW float32 noise prediction ({"cross" if c else "plain"}): rel. diff {d:.1e}')
    print('raw times:', json.dumps({n: [round(t, 3) for t in v] for n, v in times.items()}))


if __name__ == '__main__':
    main()
