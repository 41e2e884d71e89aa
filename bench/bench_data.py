"""Speed of the data pipeline: synthetic soil generation, patch items with and without augmentation, degradation kernels.

    python bench/bench_data.py [--threads 2] [--repeats 5]

Interleaved runs, medians and ratios (the machine may be shared: compare ratios, not absolute times).
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F
from sr3xct.data import synthetic_soil, VolumePatchDataset
from sr3xct.resample import degrade
from sr3xct.augment import PairedAugment


def clock(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--threads', type=int, default=2); ap.add_argument('--repeats', type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    soil = [clock(lambda: synthetic_soil((256, 256, 256), seed=r)) for r in range(max(1, a.repeats // 2))]
    rows.append(('synthetic_soil 256^3', statistics.median(soil), None))
    vol = synthetic_soil((64, 256, 256), seed=0)
    plain = VolumePatchDataset(vol, patch=256, scale=8, axes=(0,), length=1000, seed=0)
    aug = VolumePatchDataset(vol, patch=256, scale=8, axes=(0,), length=1000, seed=0, augment=PairedAugment())
    tp, ta = [], []
    for r in range(a.repeats):   # interleaved
        tp.append(clock(lambda: [plain[i] for i in range(r * 20, r * 20 + 20)]) / 20)
        ta.append(clock(lambda: [aug[i] for i in range(r * 20, r * 20 + 20)]) / 20)
    rows += [('item 256px, no augmentation', statistics.median(tp), None),
             ('item 256px, PairedAugment()', statistics.median(ta), statistics.median(ta) / statistics.median(tp))]
    hr = torch.rand(16, 1, 256, 256) * 2 - 1
    tb, tc = [], []
    for _ in range(a.repeats):
        tb.append(clock(lambda: degrade(hr, 8)))
        tc.append(clock(lambda: F.interpolate(hr, scale_factor=1 / 8, mode='bicubic', antialias=True)))
    rows += [('degrade (area) 16x256^2 x8', statistics.median(tb), None),
             ('antialiased bicubic 16x256^2 x8', statistics.median(tc), statistics.median(tc) / statistics.median(tb))]
    print(f'threads={a.threads} repeats={a.repeats}')
    print(f"{'what':36s} {'median':>12s} {'ratio':>8s}")
    for name, t, ratio in rows:
        print(f"{name:36s} {t * 1e3:10.2f} ms {'' if ratio is None else f'{ratio:7.2f}x':>8s}")


if __name__ == '__main__':
    main()
