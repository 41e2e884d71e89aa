"""Peak memory and throughput of isotropic volume SR (`sr3xct.volume_job.super_resolve_volume3d` with the packaged
isotropic model, what `sr3xct infer` uses on volumes) at several depths: memory should not grow with the number of LR
slices.

    python bench/bench_volume3d_memory.py [--slices 32 128] [--size 48] [--slab 16] [--threads 1] [--mode realism --steps 20]

Each depth runs in a fresh process (peaks do not carry over) on a random uint8 LR volume (Z, size, size); it prints
the peak resident set size (VmHWM), the wall time of the call and the HR voxels per second. Run it with a fixed glibc
mmap threshold (MALLOC_MMAP_THRESHOLD_=131072), as bench_volume.py explains. A volume shallower than one read window
(slab + 2 halo LR slices) reads smaller windows and peaks lower; deeper ones should all peak alike.

AMD EPYC, 1 thread, 2026-11 (--size 32; the x4 model, predict then cubic): 450 / 509 / 509 MB at 32 / 64 / 256 LR
slices, 0.42 / 0.37 / 0.33 M HR voxels/s. Figures with x4_3d: bench/README.md.
"""
import argparse, subprocess, sys, tempfile

CHILD = r'''
import sys, time, numpy as np, torch
torch.set_num_threads(int(sys.argv[4]))
from sr3xct.io import VolumeMeta, write_volume
from sr3xct.models import load_model
from sr3xct.volume_job import super_resolve_volume3d
z, size, slab, tmp, mode, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[5], sys.argv[6], int(sys.argv[7])
write_volume(f'{tmp}/lr.tif', np.random.default_rng(0).integers(0, 256, (z, size, size), dtype=np.uint8), VolumeMeta('uint8', 3))
m = load_model(scale=4, isotropic=True)
t0 = time.perf_counter()
r = super_resolve_volume3d(m, f'{tmp}/lr.tif', f'{tmp}/sr.tif', 4, slab=slab, mode=mode, steps=steps, progress=False)
t = time.perf_counter() - t0
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(z, int(hwm) // 1024, round(t, 1), round(r['slices'] * (size * 4) ** 2 / t))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--slices', type=int, nargs='+', default=[32, 128]); ap.add_argument('--size', type=int, default=48)
    ap.add_argument('--slab', type=int, default=16); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--mode', default='fidelity', choices=['fidelity', 'realism']); ap.add_argument('--steps', type=int, default=20)
    a = ap.parse_args()
    print('| LR slices | peak RSS (MB) | seconds | HR voxels/s |\n|---:|---:|---:|---:|')
    for z in a.slices:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, '-c', CHILD, str(z), str(a.size), str(a.slab), str(a.threads), tmp, a.mode, str(a.steps)],
                                 capture_output=True, text=True, check=True).stdout.split()
        print(f'| {out[0]} | {out[1]} | {out[2]} | {int(out[3]):.3g} |', flush=True)


if __name__ == '__main__': main()
