"""The inference API gives what it gave before the sampling-options refactor (issue 25): the same seeds, the same outputs.

`fixtures/api_reference_fp32.npz` holds the outputs of the packaged x4 and x4_3d models computed by the code before the
refactor (commit 2c783b6, `super_resolve_array` with its old signature, fp32) on an 8 x 8 x 8 LR crop of the held-out soil
(slices 80-87, block-averaged x4, uint8): fidelity, one realism sample (4 DDIM steps in 2D, 3 in 3D) and the mean and std of
2 samples, in-plane and isotropic. On the machine that wrote them the new code is byte-identical (also for the volume jobs
and for the bf16 default); another CPU may round a float32 sum differently, so the test allows one grey level.
"""
from pathlib import Path
import numpy as np
import pytest
import torch
from sr3xct.arrays import super_resolve_array
from sr3xct.io import read_volume, write_volume, VolumeMeta
from sr3xct.models import load_model
from sr3xct.volume_job import super_resolve_volume, super_resolve_volume3d

HERE = Path(__file__).parent
SOIL = HERE.parents[1] / 'shared' / 'data' / 'soil_beanbucket_pnnl_100x500x500_u8.tif'


@pytest.fixture(scope='module')
def lr():
    if not SOIL.exists(): pytest.skip(f'{SOIL} is absent (../shared holds the real CT; a fresh clone has none)')
    torch.set_num_threads(1)
    a = read_volume(SOIL)[0][80:88, 100:132, 100:132]
    return a.reshape(8, 8, 4, 8, 4).mean((2, 4)).astype(np.uint8)


@pytest.mark.parametrize('mode', ['fidelity', 'realism', 'mean'])
@pytest.mark.parametrize('iso', [False, True])
def test_same_outputs_as_before(lr, mode, iso):
    ref = np.load(HERE / 'fixtures' / 'api_reference_fp32.npz')
    x = lr if iso else lr[:2]
    out = super_resolve_array(x, 4, mode, steps=3 if iso else 4, n_samples=2, precision='fp32', isotropic=iso)
    out = out if mode == 'mean' else (out,)
    for i, o in enumerate(out):
        want = ref[f"{'3d' if iso else '2d'}-{mode}-fp32-{i}"]
        assert o.shape == want.shape and o.dtype == want.dtype
        d = np.abs(o.astype(np.float64) - want)
        assert d.max() <= 1.0 and d.mean() < 0.02, (mode, iso, i, d.max(), d.mean())


def test_volume_jobs_equal_the_array_path(lr, tmp_path):
    "A volume job writes, slice group by slice group, what the in-memory path gives for the whole volume."
    write_volume(tmp_path / 'lr.tif', lr, VolumeMeta('uint8', 3, (8., 8., 8.), 'um'))
    m3 = load_model(None, 4, isotropic=True)
    super_resolve_volume3d(m3, tmp_path / 'lr.tif', tmp_path / 'v3.tif', 4, steps=3, mode='realism', slab=4, halo=2, progress=False, precision='fp32')
    m2 = load_model(None, 4)
    super_resolve_volume(m2, tmp_path / 'lr.tif', tmp_path / 'v2.tif', 4, mode='fidelity', progress=False, precision='fp32')
    fid = super_resolve_array(lr, 4, 'fidelity', checkpoint=m2, precision='fp32')
    assert np.abs(read_volume(tmp_path / 'v2.tif')[0].astype(int) - fid.astype(int)).max() <= 1
    assert read_volume(tmp_path / 'v3.tif')[0].shape == (32, 32, 32)
