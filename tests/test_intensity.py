"""Any scan as it is stored (issue 23): the same scan as uint8, uint16 (x257), uint16 in a narrow window, int16 with a
negative offset and float32 gives the same result after the affine map (fidelity and realism, 2D and 3D, with the
packaged models); a volume's window comes from the whole volume, not a slab; `--window` overrides it; every packaged
model loads."""
import numpy as np
import pytest
import torch
from sr3xct.data import sandstone, default_scaling
from sr3xct.demo import lr_of, soil_test
from sr3xct.io import VolumeMeta, write_volume, read_volume, describe_scaling, IntensityScaling
from sr3xct.models import load_model, packaged_models
from sr3xct.arrays import super_resolve_array
from sr3xct.volume_job import super_resolve_volume, super_resolve_volume3d
from sr3xct.metrics import psnr
from cli_helpers import run

# storage -> (dtype, a, b): stored = a * v + b for the 8-bit grey value v (exact in every dtype)
STORAGES = {'uint8': ('uint8', 1, 0), 'uint16 x257': ('uint16', 257, 0), 'uint16 narrow': ('uint16', 40, 20000),
            'int16 offset': ('int16', 7, -1500), 'float32': ('float32', 0.03 / 255, 0.01)}


@pytest.fixture(autouse=True)
def _threads(): torch.set_num_threads(1)


def stored(v8:np.ndarray, name:str) -> np.ndarray:
    dt, a, b = STORAGES[name]
    return (a * v8.astype(np.float64) + b).astype(dt) if dt == 'float32' else np.rint(a * v8.astype(np.float64) + b).astype(dt)


def on_8bit(x:np.ndarray, name:str) -> np.ndarray:
    "Back on the 8-bit scale, clipped to it (a wider dtype may hold SR values beyond 255)."
    dt, a, b = STORAGES[name]
    return np.clip((x.astype(np.float64) - b) / a, 0, 255)


def assert_storage_invariant(fn, v8:np.ndarray):
    "`fn(stored array)` gives the same 8-bit-scale result for every storage: within 0.5 grey levels (the uint8 output's rounding)."
    ref = on_8bit(fn(stored(v8, 'float32')), 'float32')   # float32 output: not rounded
    for name in STORAGES:
        out = fn(stored(v8, name))
        assert out.dtype == np.dtype(STORAGES[name][0]), name   # written back in the input's dtype
        d = np.abs(on_8bit(out, name) - ref).max()
        assert d <= 0.5 + 1e-3, (name, d)


@pytest.fixture(scope='module')
def scans():
    "Small LR crops of the packaged real CT: a sandstone image stack and a soil volume (8-bit)."
    return lr_of(sandstone()[0][40:42, :96, :96]), lr_of(soil_test()[0][:8, :64, :64])


# fp32: under bf16 autocast (the default where the CPU has it) the networks' rounding turns the float32 rounding of a
# float32 scan (no exact affine map of its 8-bit copy: 2e-7 apart) into up to 0.7 grey levels (0.08 on average) in a
# realism sample and 0.05-0.3 in fidelity, on top of the 0.5 of the uint8 output's rounding: see test_default_precision
@pytest.mark.parametrize('mode, precision', [('fidelity', 'fp32'), ('realism', 'fp32')])
def test_2d_any_storage_same_result(scans, mode, precision):
    lr, _ = scans
    m = load_model(scale=4)
    assert_storage_invariant(lambda a: super_resolve_array(a, 4, mode, checkpoint=m, steps=3, seed=1, precision=precision), lr)


@pytest.mark.parametrize('mode, precision', [('fidelity', 'fp32'), ('realism', 'fp32')])
def test_3d_any_storage_same_result(scans, mode, precision):
    _, vol = scans
    m = load_model(scale=4, isotropic=True)
    v = vol[:6, :16, :16] if mode == 'realism' else vol
    assert_storage_invariant(lambda a: super_resolve_array(a, 4, mode, checkpoint=m, steps=2, seed=1, isotropic=True, precision=precision), v)


def test_default_precision_same_result_within_bf16_rounding():
    "At the default precision (bf16 where native) every storage scores within 0.01 dB of the 8-bit copy and agrees to a grey level."
    hr2, hr3 = sandstone()[0][40:42, :96, :96], soil_test()[0][:32, :64, :64]
    for iso, hr, lr in ((False, hr2, lr_of(hr2)), (True, hr3, lr3_of(hr3))):
        m = load_model(scale=4, isotropic=iso)
        outs = {k: on_8bit(super_resolve_array(stored(lr, k), 4, checkpoint=m, isotropic=iso), k) for k in STORAGES}
        for k, o in outs.items():
            assert np.abs(o - outs['float32']).max() <= 1.0, (iso, k)
            assert abs(psnr(o, hr, 255) - psnr(outs['uint8'], hr, 255)) < 0.01, (iso, k)


def lr3_of(hr:np.ndarray) -> np.ndarray:
    "The 4x4x4 block average of an 8-bit volume, rounded to 8 bits."
    Z, Y, X = (n // 4 for n in hr.shape)
    return np.rint(hr[:Z * 4, :Y * 4, :X * 4].reshape(Z, 4, Y, 4, X, 4).mean((1, 3, 5))).astype(np.uint8)


def test_window_of_whole_volume_not_of_a_slab(scans, tmp_path):
    "Slabs of 2 LR slices use the window of the whole volume: the file job equals the in-memory whole-volume result."
    _, vol = scans
    v = stored(vol[:, :24, :24], 'uint16 narrow')
    write_volume(tmp_path / 'lr.tif', v, VolumeMeta('uint16', 3))
    m = load_model(scale=4, isotropic=True)
    r = super_resolve_volume3d(m, tmp_path / 'lr.tif', tmp_path / 'sr.tif', 4, slab=2, halo=2, progress=False)
    assert r['scaling'] == default_scaling(v)
    assert r['scaling'] != default_scaling(v[:2])   # a slab's own window would differ
    sr, meta = read_volume(tmp_path / 'sr.tif')
    whole = super_resolve_array(v, 4, checkpoint=m, isotropic=True)
    assert np.abs(sr.astype(np.int64) - whole.astype(np.int64)).max() <= 1   # the same but for rounding ties
    assert meta.description.splitlines()[-1] == describe_scaling(r['scaling'])
    assert 'percentiles 0.5-99.5 of the input' in meta.description


def test_window_override_cli_and_python(scans, tmp_path):
    lr, _ = scans
    v = stored(lr, 'int16 offset')
    write_volume(tmp_path / 'lr.tif', v, VolumeMeta('int16', 3))
    rc, _, err = run('infer', '--input', tmp_path / 'lr.tif', '--output', tmp_path / 'sr.tif', '--in-plane', '--window', '-1200', '-200',
                     '--no-progress', '--threads', '1')
    assert rc == 0, err
    assert 'sr3xct intensity window: -1200 -200 (int16, set by hand)' in err
    sr, meta = read_volume(tmp_path / 'sr.tif')
    assert meta.description.endswith('sr3xct intensity window: -1200 -200 (int16, set by hand)')
    assert np.array_equal(sr, super_resolve_array(v, 4, window=(-1200, -200)))
    assert not np.array_equal(sr, super_resolve_array(v, 4))   # the scan's own window is another
    sc = IntensityScaling.from_window('int16', -1200, -200)
    r = super_resolve_volume(load_model(scale=4), tmp_path / 'lr.tif', tmp_path / 'py.tif', 4, window=(-1200, -200), progress=False)
    assert r['scaling'] == sc and np.array_equal(read_volume(tmp_path / 'py.tif')[0], sr)
    rc, _, err = run('infer', '--input', tmp_path / 'lr.tif', '--output', tmp_path / 'bad.tif', '--in-plane', '--window', '5', '5')
    assert rc == 2 and 'need a finite window LOW < HIGH' in err and err.count('\n') == 1 and not (tmp_path / 'bad.tif').exists()


def test_every_packaged_model_loads():
    "x2, x4 and x8 ship, each with its isotropic variant, and load with no checkpoint (`sr3xct infer --scale N`)."
    found = packaged_models()
    assert {f'x{s}{v}' for s in (2, 4, 8) for v in ('', '_3d')} <= set(found), sorted(found)
    lr = sandstone()[0][40:41, :32, :32]
    for s in (2, 4, 8):
        for iso in (False, True):
            m = load_model(scale=s, isotropic=iso)
            assert m.scale == s and m.modes == ('fidelity', 'realism', 'mean') and m.degradation == ('3d' if iso else '2d')
        assert super_resolve_array(lr, s).shape == (1, 32 * s, 32 * s)
