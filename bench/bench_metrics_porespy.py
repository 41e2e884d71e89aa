"""Cross-check of sr3xct's local thickness, pore-size distribution and two-point correlation against porespy.

    python bench/bench_metrics_porespy.py [--big]

porespy is not a dependency of sr3xct (it pulls numba, vtk, pandas...): install it in a separate environment
(`pip install porespy` next to torch and sr3xct). Without it this script says so and exits 0.

Local thickness: porespy's `local_thickness(method='legacy', sizes=<every distinct distance value>)` tests each
distance-transform value with a strict cover (the same definition as sr3xct, computed one distance transform per
radius), so the two must agree voxel for voxel; porespy's default (`method='bf'`, integer radii) rounds radii down
to whole voxels. (porespy 3.2's `sizes=None` for 'legacy' takes the values in ascending order and labels every voxel
1, so the values are passed explicitly, and porespy sorts them descending.)
Two-point correlation: porespy's `two_point_correlation` with unit bins centred on integers, `probability_scaled`.
`--big` adds timings on 64 x 512 x 512 volumes (the sandstone asset tiled; smooth random pores of two sizes), sr3xct
against porespy's default.
Everything runs on one thread (OMP_NUM_THREADS=1, porespy's ncores=1).
"""
import os
os.environ.setdefault('OMP_NUM_THREADS', '1'); os.environ.setdefault('NUMBA_NUM_THREADS', '1')
import argparse, importlib.resources, sys, time
import numpy as np, tifffile
from scipy import ndimage
from sr3xct.metrics import local_thickness, pore_mask, pore_size_distribution, two_point_correlation


def timed(f, *a, **k):
    t = time.perf_counter(); out = f(*a, **k)
    return out, time.perf_counter() - t


def cases(ps) -> dict:
    "Boolean pore masks: closed forms, the packaged sandstone (Otsu), porespy blobs in 2D and 3D."
    yy, xx = np.mgrid[:41, :41]; g = np.indices((31, 31, 31))
    vol = tifffile.imread(importlib.resources.files('sr3xct') / 'assets' / 'sandstone_porespybinder_50x250x250_u8.tif')
    return {'disk x^2+y^2<100': (yy - 20) ** 2 + (xx - 20) ** 2 < 100,
            'sphere |x|^2<81': ((g - 15) ** 2).sum(0) < 81,
            'sandstone 50x250x250': pore_mask(vol),
            'blobs 2D 512^2': ps.generators.blobs([512, 512], porosity=0.4, blobiness=1, seed=0),
            'blobs 3D 64x128^2': ps.generators.blobs([64, 128, 128], porosity=0.4, blobiness=2, seed=0)}


def psd_row(name, m, ps) -> str:
    "Local thickness and pore-size distribution, sr3xct vs porespy."
    lt, t_ours = timed(local_thickness, m)
    dt = ndimage.distance_transform_edt(m)
    exact, t_legacy = timed(ps.filters.local_thickness, m, dt=dt, method='legacy', sizes=np.unique(dt[m]))
    bf, t_bf = timed(ps.filters.local_thickness, m)
    ours = pore_size_distribution(m)
    hist = np.bincount(np.rint(exact[m]).astype(int), minlength=len(ours['radius']) + 1)[1:]
    d_frac = np.abs(ours['fraction'] - hist[:len(ours['fraction'])] / m.sum()).max()
    return (f"| {name} | {lt[m].mean():.3f} | {exact[m].mean():.3f} | {np.abs(lt - exact)[m].max():.2g} | {d_frac:.2g} | "
            f"{bf[m].mean():.3f} | {t_ours:.2f} | {t_legacy:.2f} | {t_bf:.2f} |")


def s2_row(name, m, ps) -> str:
    "Two-point correlation up to r_max, sr3xct vs porespy (unit bins centred on integers)."
    ours = two_point_correlation(m)
    r_max = int(ours['r'][-1])
    theirs = ps.metrics.two_point_correlation(m, bins=np.arange(-0.5, r_max + 1.0))
    d = np.abs(ours['s2'] - theirs.probability_scaled)
    return f"| {name} | {r_max} | {ours['s2'][1]:.4f} | {theirs.probability_scaled[1]:.4f} | {d.max():.2g} | {ours['correlation_length']:.2f} |"


def big_rows(sandstone, ps):
    "Timings on 64 x 512 x 512 volumes."

    noise = np.random.default_rng(0).random((64, 512, 512), dtype=np.float32)
    vols = {'sandstone tiled': np.tile(sandstone, (2, 3, 3))[:64, :512, :512]}
    for sigma in (4, 8): vols[f'smooth pores, sigma {sigma}'] = ndimage.gaussian_filter(noise, sigma, mode='wrap') > 0.5
    print('\n## 64 x 512 x 512 volumes (one thread, s)\n\n| volume | porosity | largest radius | sr3xct mean | sr3xct s | porespy bf mean | porespy bf s |\n|---|---:|---:|---:|---:|---:|---:|')
    for k, m in vols.items():
        lt, t_ours = timed(local_thickness, m)
        bf, t_bf = timed(ps.filters.local_thickness, m)
        print(f'| {k} | {m.mean():.3f} | {lt.max():.2f} | {lt[m].mean():.3f} | {t_ours:.1f} | {bf[m].mean():.3f} | {t_bf:.1f} |', flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--big', action='store_true', help='add the 64 x 512 x 512 timing')
    args = ap.parse_args(argv)
    try: import porespy as ps
    except ImportError:
        print('porespy is not installed: skipping the cross-check (pip install porespy in a separate environment)'); return 0
    ps.settings.ncores = 1; ps.settings.tqdm['disable'] = True
    ps.filters.local_thickness(np.ones((8, 8), bool) & (np.indices((8, 8))[0] > 1))   # numba compiles once
    ms = cases(ps)
    print(f'porespy {ps.__version__}\n\n## Local thickness and pore-size distribution (voxels; times in s)\n')
    print('| case | sr3xct mean | porespy legacy (all radii) mean | max abs diff | PSD max abs diff | porespy bf mean (integer radii) | sr3xct s | legacy s | bf s |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for k, m in ms.items(): print(psd_row(k, m, ps), flush=True)
    print('\n## Two-point correlation S2(r)\n\n| case | r_max | sr3xct S2(1) | porespy S2(1) | max abs diff | sr3xct corr. length |\n|---|---:|---:|---:|---:|---:|')
    for k, m in ms.items(): print(s2_row(k, m, ps), flush=True)
    if args.big: big_rows(ms['sandstone 50x250x250'], ps)
    return 0


if __name__ == '__main__': sys.exit(main())
