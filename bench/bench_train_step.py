"""One training step at batch 2, 256x256 on 2 CPU threads (issue 5, "Speed").

ours: the SR3 reference-size UNet (deep.yaml's model) with cross-attention, deep.yaml's four losses (L1 + SSIM +
VGG19 perceptual with random but real-shaped weights made locally + multi-scale), gradient clipping and the EMA
update; fp32 and bf16 autocast.
plain: the same UNet without cross-attention, L1 on the noise only, Adam step (what the SR3 reference's step does).

Each configuration runs in its own subprocess (so peak RSS is its own), configurations are interleaved over rounds,
and every subprocess gets the same glibc malloc setting. Prints median seconds/step, ratios to plain fp32, peak RSS.

    python bench/bench_train_step.py [--rounds 2] [--steps 2] [--malloc raised|default] [--size 256] [--device cuda]

On CUDA, 'fp16' (autocast + gradient scaler) joins the configurations and peak memory is the allocator's peak.
"""
import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

CONFIGS = {'plain-fp32': ('plain', 'fp32'), 'ours-fp32': ('ours', 'fp32'), 'plain-bf16': ('plain', 'bf16'), 'ours-bf16': ('ours', 'bf16')}
CUDA_ONLY = {'plain-fp16': ('plain', 'fp16'), 'ours-fp16': ('ours', 'fp16')}
MALLOC = {'raised': {'MALLOC_MMAP_THRESHOLD_': str(1 << 30), 'MALLOC_TRIM_THRESHOLD_': str(1 << 31)}, 'default': {}}


def vgg_weights(path: Path):
    "Random VGG19 `features` weights in torchvision's layout (no download: only the shapes are real)."
    import torch
    from torch import nn
    cfg = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M']
    sd, c, i = {}, 3, 0
    g = torch.Generator().manual_seed(0)
    for v in cfg:
        if v == 'M': i += 1; continue
        conv = nn.Conv2d(c, v, 3, padding=1)
        sd[f'features.{i}.weight'] = torch.randn(conv.weight.shape, generator=g) * (2 / (9 * c)) ** 0.5
        sd[f'features.{i}.bias'] = torch.zeros(v)
        c, i = v, i + 2
    torch.save(sd, path)


def worker(kind: str, precision: str, steps: int, size: int, vgg: str, device: str = 'cpu'):
    import torch
    torch.set_num_threads(2)
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    from sr3xct.config import ModelConfig, to_dict
    from sr3xct.unet import UNet
    from sr3xct.losses import SR3XCTLoss, VGGPerceptualLoss
    from sr3xct.diffusion import GaussianDiffusion
    from sr3xct.train import EMA
    from sr3xct.runtime import Precision
    from sr3xct.config import load_config
    torch.manual_seed(0)
    deep = load_config('train/32_256/deep')
    mc, lc = deep.model, deep.loss
    mc.image_size = size
    mc.use_cross_attn = kind == 'ours'
    net = UNet(**to_dict(mc))
    loss = (SR3XCTLoss(w_ssim=lc.w_ssim, w_perceptual=lc.w_perceptual, w_multiscale=lc.w_multiscale, w_frequency=lc.w_frequency,
                       perceptual=VGGPerceptualLoss(weights=vgg))
            if kind == 'ours' else SR3XCTLoss(w_ssim=0, w_perceptual=0, w_multiscale=0, w_frequency=0))
    diff = GaussianDiffusion(net).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    ema = EMA(net) if kind == 'ours' else None
    prec = Precision(precision, dev)
    g = torch.Generator(dev).manual_seed(0)
    hr = torch.rand(2, 1, size, size, device=dev) * 2 - 1
    cond = (hr + 0.1 * torch.randn_like(hr)).clamp(-1, 1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for i in range(steps + 1):
        sync(); t0 = time.perf_counter()
        with prec.autocast(): l, parts = diff.p_losses(hr, cond, loss, generator=g)
        prec.backward(l)
        if kind == 'ours': prec.unscale_(opt); torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        prec.step(opt); opt.zero_grad(set_to_none=True)
        if ema is not None: ema.update(net, i)
        sync()
        if i: times.append(time.perf_counter() - t0)  # step 0 is warm-up
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == 'cuda': peak, rss0 = torch.cuda.max_memory_allocated() / 1024, 0   # KiB, like ru_maxrss
    print(json.dumps({'times': times, 'peak_mb': peak / 1024, 'step_mb': (peak - rss0) / 1024,
                      'params_m': sum(p.numel() for p in net.parameters()) / 1e6, 'parts': sorted(parts)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=2); ap.add_argument('--steps', type=int, default=2)
    ap.add_argument('--malloc', choices=list(MALLOC), default='raised'); ap.add_argument('--size', type=int, default=256)
    ap.add_argument('--only', nargs='*', default=None); ap.add_argument('--device', default='cpu')
    ap.add_argument('--worker', nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker[0], a.worker[1], int(a.worker[2]), a.size, a.worker[3], a.device)
    configs = {**CONFIGS, **(CUDA_ONLY if a.device.startswith('cuda') else {})}
    a.only = a.only or list(configs)
    env = {**os.environ, 'OMP_NUM_THREADS': '2', **MALLOC[a.malloc]}
    res = {k: {'times': [], 'peak_mb': [], 'step_mb': []} for k in a.only}
    with tempfile.TemporaryDirectory() as d:
        vgg = Path(d) / 'vgg19_random.pth'; vgg_weights(vgg)
        for r in range(a.rounds):
            for name in a.only:
                kind, prec = configs[name]
                out = subprocess.run([sys.executable, __file__, '--size', str(a.size), '--device', a.device, '--worker', kind, prec, str(a.steps), str(vgg)],
                                     capture_output=True, text=True, env=env)
                if out.returncode: sys.exit(f'{name} failed:\n{out.stderr[-3000:]}')
                o = json.loads(out.stdout.strip().splitlines()[-1])
                for k in ('times', 'peak_mb', 'step_mb'): res[name][k] += o[k] if k == 'times' else [o[k]]
                res[name]['params_m'], res[name]['parts'] = o['params_m'], o['parts']
                print(f"round {r + 1} {name}: {', '.join(f'{t:.2f}' for t in o['times'])} s", file=sys.stderr, flush=True)
    base = statistics.median(res['plain-fp32']['times']) if 'plain-fp32' in res else None
    where = a.device if a.device != 'cpu' else '2 threads'
    print(f"\nbatch 2, {a.size}x{a.size}, {where}, malloc {a.malloc}, {a.rounds} rounds x {a.steps} steps (interleaved)\n")
    print(f"| step | params (M) | loss parts | median s/step | vs plain-fp32 | vs plain, same precision | peak {'GPU memory' if a.device != 'cpu' else 'RSS'} (MB) |")
    print('|---|---|---|---|---|---|---|')
    for name, r in res.items():
        med = statistics.median(r['times'])
        same = res.get(f"plain-{name.split('-')[1]}")
        rs = f"{med / statistics.median(same['times']):.2f}x" if same else '-'
        print(f"| {name} | {r['params_m']:.1f} | {'+'.join(p for p in r['parts'] if p != 'total')} | {med:.2f} | "
              f"{med / base:.2f}x | {rs} | {max(r['peak_mb']):.0f} |" if base else '')

if __name__ == '__main__':
    main()
