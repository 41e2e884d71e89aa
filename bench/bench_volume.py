"""Peak memory of volume super-resolution at 8 and 128 slices: streaming (`super_resolve_volume`) vs in memory.

    python bench/bench_volume.py [--slices 8 128] [--lr-size 128] [--scale 4] [--tile 512] [--steps 1] [--reps 1]

Each measurement runs in a fresh Python process (so peaks do not carry over) that imports torch, builds a tiny
random UNet (its cost is not what is measured), and super-resolves a uint16 LR volume (Z, lr, lr) by `scale`, then
prints its peak resident set size (VmHWM) and the time (the table gives seconds per run and slices per second, the
whole run: reading, sampling, writing, and the first network call's warm-up, so a small depth understates the
steady rate). Two ways are compared in the same run, interleaved:
- stream: `sr3xct.volume_job.super_resolve_volume` (slices read one at a time, written through the resumable writer);
- memory: the naive way: `read_volume` the whole input, super-resolve into one (Z, Y, X) array, `write_volume`;
- stream-b1 (with `--modes`): stream with one tile per network call, to see what batching tiles/slices buys.
The goal: stream's peak RSS at 128 slices within 10% of its peak at 8 slices. 2 threads.
Run it with a fixed glibc mmap threshold (MALLOC_MMAP_THRESHOLD_=131072): with glibc's default dynamic threshold,
freed activation buffers move the threshold up and later ones come from a fragmenting heap, so the peak creeps up
with the number of network calls (about +60 MB over 128 slices here), whatever the data path does.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r'''
import json, sys, time, resource
import numpy as np, torch
torch.set_num_threads(2)
from sr3xct.io import VolumeMeta, write_volume, read_volume, IntensityScaling
from sr3xct.unet import UNet
from sr3xct.diffusion import GaussianDiffusion
from sr3xct.infer import super_resolve
from sr3xct.volume_job import super_resolve_volume
mode, z, lr_size, scale, steps, tile, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
torch.manual_seed(0)
net = UNet(inner_channel=4, norm_groups=2, channel_mults=[1, 1, 1, 1, 1], attn_res=[], res_blocks=1, image_size=tile, use_cross_attn=False).eval()
d = GaussianDiffusion(net, n_timestep=1000)
inp, out = f'{tmp}/lr_{z}.tif', f'{tmp}/sr_{mode}_{z}.tif'
t0 = time.perf_counter()
kw = dict(tile=tile, overlap=32, batch_size=4, steps=steps)
if mode.startswith('stream'):   # 'stream-b1': one tile per network call (no batching), for the throughput comparison
    super_resolve_volume(d, inp, out, scale, progress=False, **{**kw, 'batch_size': 1 if mode == 'stream-b1' else 4})
else:
    vol, meta = read_volume(inp)
    sc = IntensityScaling.from_dtype(vol.dtype)
    res = np.empty((vol.shape[0], vol.shape[1] * scale, vol.shape[2] * scale), np.float32)
    for i in range(0, len(vol), 4):   # 4 slices per call, as stream batches them (one 512 tile each)
        g = torch.Generator().manual_seed(i)
        res[i:i + 4] = super_resolve(d, torch.from_numpy(sc.forward(vol[i:i + 4]))[:, None], scale, generator=g, **kw)[0][:, 0].numpy()
    write_volume(out, res, meta.scaled(scale), scaling=sc)
dt = time.perf_counter() - t0
hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print(json.dumps({'mode': mode, 'slices': z, 'peak_rss_mb': hwm / 1024, 'seconds': dt}))
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--slices', type=int, nargs='+', default=[8, 128])
    ap.add_argument('--lr-size', type=int, default=128)
    ap.add_argument('--tile', type=int, default=512)
    ap.add_argument('--scale', type=int, default=4)
    ap.add_argument('--steps', type=int, default=1)
    ap.add_argument('--reps', type=int, default=1)
    ap.add_argument('--modes', nargs='+', default=['stream', 'memory'])
    a = ap.parse_args()
    import numpy as np
    from sr3xct.io import VolumeMeta, write_volume
    print(f'threads 2; LR (Z, {a.lr_size}, {a.lr_size}) uint16 -> x{a.scale}; tile {a.tile}, {a.steps} DDIM steps, a 5-level UNet 4 channels wide (the network is not what is measured); '
          f'MALLOC_MMAP_THRESHOLD_={os.environ.get("MALLOC_MMAP_THRESHOLD_", "unset")}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for z in a.slices:
            v = np.random.default_rng(0).integers(0, 65535, (z, a.lr_size, a.lr_size), dtype=np.uint16)
            write_volume(f'{tmp}/lr_{z}.tif', v, VolumeMeta('uint16', 3, (1., 4., 4.), 'um'))
        for rep in range(a.reps):
            for z in a.slices:
                for mode in a.modes:
                    for f in Path(tmp).glob(f'sr_{mode}_{z}.tif'): f.unlink()
                    r = subprocess.run([sys.executable, '-c', CHILD, mode, str(z), str(a.lr_size), str(a.scale), str(a.steps), str(a.tile), tmp],
                                       capture_output=True, text=True)
                    if r.returncode: sys.exit(f'child failed:\n{r.stderr}')
                    rec = json.loads(r.stdout.strip().splitlines()[-1])
                    rows.setdefault((mode, z), []).append(rec)
                    print(f'  rep {rep} {mode:6s} {z:4d} slices: peak RSS {rec["peak_rss_mb"]:7.1f} MB, {rec["seconds"]:6.1f} s, '
                          f'{z / rec["seconds"]:.2f} slices/s', flush=True)
    out_mb = {z: z * (a.lr_size * a.scale) ** 2 * 2 / 2**20 for z in a.slices}
    print(f'\n| mode | depth (slices) | output MB | peak RSS MB (median) | s (median) | slices/s |')
    print('|---|---:|---:|---:|---:|---:|')
    for (mode, z), recs in sorted(rows.items()):
        sec = statistics.median(r['seconds'] for r in recs)
        print(f"| {mode} | {z} | {out_mb[z]:.1f} | {statistics.median(r['peak_rss_mb'] for r in recs):.1f} | {sec:.2f} | {z / sec:.2f} |")
    lo, hi = min(a.slices), max(a.slices)
    for mode in a.modes:
        m = lambda z: statistics.median(r['peak_rss_mb'] for r in rows[(mode, z)])
        print(f'{mode}: peak RSS {hi} / {lo} slices = {m(hi) / m(lo):.3f}')


if __name__ == '__main__':
    main()
