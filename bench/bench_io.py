"""Benchmark sr3xct.io: one slice vs the whole volume, and slice-by-slice vs whole-volume writing.

    .venv/bin/python bench/bench_io.py [--z 96] [--yx 512] [--reps 5]

Prints medians over interleaved repetitions (time, and tracemalloc peak of numpy/Python allocations; memory maps
are not counted, which is the point: the page cache holds them, not the process heap).
"""
import argparse, tempfile, time, tracemalloc
from pathlib import Path
import numpy as np
import tifffile
from sr3xct.io import SliceWriter, VolumeMeta, open_volume, read_slice, read_volume, write_volume


def measure(fn):
    tracemalloc.start(); t = time.perf_counter(); fn()
    dt = time.perf_counter() - t; peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return dt, peak


def main(z, yx, reps):
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 65535, (z, yx, yx)).astype(np.uint16)
    tmp = Path(tempfile.mkdtemp())
    files = {'imagej (memmap)': tmp / 'ij.tif', 'zlib (pages)': tmp / 'zlib.tif', 'folder': tmp / 'slices'}
    tifffile.imwrite(files['imagej (memmap)'], vol, imagej=True, metadata={'axes': 'ZYX'})
    tifffile.imwrite(files['zlib (pages)'], vol, photometric='minisblack', compression='zlib', compressionargs={'level': 1})
    files['folder'].mkdir()
    for k in range(z): tifffile.imwrite(files['folder'] / f'{k:04d}.tif', vol[k])
    meta = VolumeMeta('uint16', 3, (1.0, 1.0, 1.0), 'um')
    ops = {}
    for name, f in files.items():
        ops[(name, 'read_volume')] = lambda f=f: read_volume(f)
        ops[(name, 'read_slice axis 0')] = lambda f=f: read_slice(f, z // 2)
        ops[(name, 'read_slice axis 1')] = lambda f=f: read_slice(f, yx // 2, axis=1)
    def stream():
        with SliceWriter(tmp / 'sw.tif', vol.shape, meta, overwrite=True) as w:
            for k in range(z): w[k] = vol[k]
    ops[('write', 'write_volume')] = lambda: write_volume(tmp / 'wv.tif', vol, meta, overwrite=True)
    ops[('write', 'SliceWriter')] = stream
    res = {k: [] for k in ops}
    for _ in range(reps):                       # interleaved: machine noise hits every op alike
        for k, fn in ops.items(): res[k].append(measure(fn))
    print(f'volume {vol.shape} uint16 = {vol.nbytes / 2**20:.0f} MiB, {reps} reps, medians\n')
    print(f"| {'layout':16} | {'operation':18} | {'time ms':>9} | {'peak MiB':>9} | {'time / whole':>12} | {'peak / whole':>12} |")
    print(f"|{'-' * 18}|{'-' * 20}|{'-' * 11}|{'-' * 11}|{'-' * 14}|{'-' * 14}|")
    for (layout, op), r in res.items():
        t, p = np.median([x[0] for x in r]), np.median([x[1] for x in r])
        base = res[(layout, 'read_volume' if layout != 'write' else 'write_volume')]
        bt, bp = np.median([x[0] for x in base]), np.median([x[1] for x in base])
        print(f'| {layout:16} | {op:18} | {t * 1e3:9.1f} | {p / 2**20:9.2f} | {t / bt:12.3f} | {p / bp:12.3f} |')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--z', type=int, default=96); ap.add_argument('--yx', type=int, default=512)
    ap.add_argument('--reps', type=int, default=5)
    a = ap.parse_args(); main(a.z, a.yx, a.reps)
