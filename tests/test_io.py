"Tests of sr3xct.io: reading/writing TIFF volumes, metadata, intensity scaling, and one clear error per bad input."
import importlib.resources
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings, strategies as st

from sr3xct import io
from sr3xct.errors import InputError
from sr3xct.io import (IntensityScaling, SliceWriter, VolumeMeta, check_patch_size, open_volume,
                       read_slice, read_volume, volume_info, volume_shape, write_volume)

DTYPES = ['uint8', 'uint16', 'int16', 'float32']
SANDSTONE = importlib.resources.files('sr3xct') / 'assets' / 'sandstone_porespybinder_50x250x250_u8.tif'


def sample(dtype, shape=(7, 24, 32), seed=0):
    "Random data spanning much of the dtype's range."
    rng = np.random.default_rng(seed)
    if dtype == 'float32': return rng.normal(0.3, 0.2, shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)


# ---------------------------------------------------------------- reading

@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('layout', ['imagej', 'plain', 'zlib', 'ome', 'pages'])
def test_read_layouts(tmp_path, dtype, layout):
    a, f = sample(dtype), tmp_path / f'{layout}.tif'
    if layout == 'imagej': tifffile.imwrite(f, a, imagej=True, metadata={'axes': 'ZYX'})
    elif layout == 'plain': tifffile.imwrite(f, a, photometric='minisblack')
    elif layout == 'zlib': tifffile.imwrite(f, a, photometric='minisblack', compression='zlib')
    elif layout == 'ome': tifffile.imwrite(tmp_path / 'v.ome.tif', a, metadata={'axes': 'ZYX'}); f = tmp_path / 'v.ome.tif'
    else:   # separate tifffile writes appended: one series per page
        for z in a: tifffile.imwrite(f, z, append=True, photometric='minisblack')
    v, m = read_volume(f)
    assert v.dtype == np.dtype(dtype) and m.dtype == dtype and m.ndim == 3
    np.testing.assert_array_equal(v, a)
    assert volume_info(f) == (a.shape, dtype) and volume_shape(f) == a.shape
    with open_volume(f) as r:
        assert r.memmapped == (layout in ('imagej', 'plain', 'ome'))   # memmap only when contiguous
        for axis in range(3):
            for i in (0, a.shape[axis] // 2, -1):
                np.testing.assert_array_equal(r.slice(i, axis), np.take(a, i, axis=axis))


@pytest.mark.parametrize('dtype', DTYPES)
def test_read_2d(tmp_path, dtype):
    a = sample(dtype, (20, 30))
    tifffile.imwrite(tmp_path / 'a.tif', a)
    v, m = read_volume(tmp_path / 'a.tif')
    assert v.shape == (1, 20, 30) and m.ndim == 2
    np.testing.assert_array_equal(v[0], a)
    np.testing.assert_array_equal(read_slice(tmp_path / 'a.tif', 5, axis=1), a[5][None])


def test_big_endian(tmp_path):
    a = sample('uint16')
    tifffile.imwrite(tmp_path / 'be.tif', a, byteorder='>', photometric='minisblack')
    v, _ = read_volume(tmp_path / 'be.tif')
    assert v.dtype == np.dtype('uint16') and v.dtype.isnative
    np.testing.assert_array_equal(v, a)
    np.testing.assert_array_equal(read_slice(tmp_path / 'be.tif', 3, axis=2), a[:, :, 3])


def test_singleton_axes_squeezed(tmp_path):
    a = sample('uint8', (5, 1, 16, 16))
    tifffile.imwrite(tmp_path / 'zc.tif', a, imagej=True, metadata={'axes': 'ZCYX'})
    v, m = read_volume(tmp_path / 'zc.tif')
    assert v.shape == (5, 16, 16) and m.ndim == 3


def test_imagej_default_axes(tmp_path):
    "tifffile.imwrite(f, vol, imagej=True) without axes stores 'channels' in grayscale mode: still a grey stack."
    a = sample('uint16', (9, 16, 16))
    tifffile.imwrite(tmp_path / 'a.tif', a, imagej=True)
    assert tifffile.TiffFile(tmp_path / 'a.tif').series[0].axes == 'CYX'
    v, m = read_volume(tmp_path / 'a.tif')
    np.testing.assert_array_equal(v, a); assert m.ndim == 3


def test_folder_volume(tmp_path):
    a = sample('uint16', (12, 10, 14))
    for z in range(12): tifffile.imwrite(tmp_path / f's{z}.tif', a[z])   # s10 must come after s9
    (tmp_path / 'notes.txt').write_text('ignored')
    v, m = read_volume(tmp_path)
    np.testing.assert_array_equal(v, a)
    assert m.ndim == 3 and volume_info(tmp_path) == ((12, 10, 14), 'uint16')
    for axis in range(3): np.testing.assert_array_equal(read_slice(tmp_path, 4, axis), np.take(a, 4, axis=axis))


def test_sandstone_asset():
    v, m = read_volume(SANDSTONE)
    assert v.shape == (50, 250, 250) and v.dtype == np.uint8 and m.voxel_size is None
    assert 0 < (v < 128).mean() < 1   # both pores and grains


def test_sandstone_shared_copy(shared):
    f = shared / 'data' / 'sandstone_porespybinder_50x250x250_u8.tif'
    if not f.exists(): pytest.skip(f'{f} absent')
    np.testing.assert_array_equal(read_volume(f)[0], read_volume(SANDSTONE)[0])


# ---------------------------------------------------------------- metadata

def test_imagej_metadata(tmp_path):
    tifffile.imwrite(tmp_path / 'a.tif', sample('uint16'), imagej=True, resolution=(1 / 0.65, 1 / 0.7),
                     metadata={'axes': 'ZYX', 'spacing': 1.3, 'unit': '\\u00B5m', 'Info': 'scan A'})
    m = read_volume(tmp_path / 'a.tif')[1]
    np.testing.assert_allclose(m.voxel_size, (1.3, 0.7, 0.65), rtol=1e-6)
    assert (m.unit, m.description) == ('um', 'scan A')


def test_ome_metadata(tmp_path):
    tifffile.imwrite(tmp_path / 'a.ome.tif', sample('int16'),
                     metadata={'axes': 'ZYX', 'PhysicalSizeX': 2.5, 'PhysicalSizeY': 2.5, 'PhysicalSizeZ': 5.0,
                               'PhysicalSizeXUnit': '\u00b5m', 'Description': 'ome desc'})
    m = read_volume(tmp_path / 'a.ome.tif')[1]
    assert m.voxel_size == (5.0, 2.5, 2.5) and m.unit == 'um' and m.description == 'ome desc'


def test_plain_resolution_metadata(tmp_path):
    tifffile.imwrite(tmp_path / 'a.tif', sample('uint8', (24, 32)), resolution=(1000.0, 500.0),
                     resolutionunit='CENTIMETER', description='plain text')
    m = read_volume(tmp_path / 'a.tif')[1]
    np.testing.assert_allclose(m.voxel_size, (10.0, 20.0, 10.0))   # z taken = x; cm -> um
    assert m.unit == 'um' and m.description == 'plain text'


def test_uncalibrated(tmp_path):
    tifffile.imwrite(tmp_path / 'a.tif', sample('uint8'), photometric='minisblack')
    m = read_volume(tmp_path / 'a.tif')[1]
    assert m.voxel_size is None and m.description == ''


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('ndim', [2, 3])
def test_write_roundtrip(tmp_path, dtype, ndim):
    a = sample(dtype, (1 if ndim == 2 else 5, 16, 20))
    meta = VolumeMeta(dtype, ndim, (3.0, 1.2, 1.2), 'um', 'line 1\nline 2')
    write_volume(tmp_path / 'o.tif', a, meta.scaled(4))
    b, m = read_volume(tmp_path / 'o.tif')
    np.testing.assert_array_equal(b, a)
    assert (m.dtype, m.ndim, m.unit, m.description) == (dtype, ndim, 'um', 'line 1\nline 2')
    np.testing.assert_allclose(m.voxel_size, (3.0, 0.3, 0.3), rtol=1e-6)


def test_write_uncalibrated_and_other_unit(tmp_path):
    write_volume(tmp_path / 'a.tif', sample('uint8'), VolumeMeta('uint8'))
    assert read_volume(tmp_path / 'a.tif')[1].voxel_size is None
    write_volume(tmp_path / 'b.tif', sample('uint8'), VolumeMeta('uint8', 3, (0.01, 0.02, 0.02), 'mm'))
    m = read_volume(tmp_path / 'b.tif')[1]
    assert m.unit == 'mm'
    np.testing.assert_allclose(m.voxel_size, (0.01, 0.02, 0.02), rtol=1e-6)


def test_write_with_scaling(tmp_path):
    a = sample('uint16')
    sc = IntensityScaling.from_dtype('uint16')
    write_volume(tmp_path / 'o.tif', sc.forward(a), VolumeMeta('uint16'), scaling=sc)
    np.testing.assert_array_equal(read_volume(tmp_path / 'o.tif')[0], a)


def test_write_safe_cast(tmp_path):
    a = sample('uint8')
    write_volume(tmp_path / 'o.tif', a, VolumeMeta('uint16'))
    b, m = read_volume(tmp_path / 'o.tif')
    assert b.dtype == np.uint16 and m.dtype == 'uint16'
    np.testing.assert_array_equal(b, a)


def test_overwrite_refused_and_allowed(tmp_path):
    f = tmp_path / 'o.tif'
    write_volume(f, sample('uint8'), VolumeMeta('uint8'))
    before = f.read_bytes()
    with pytest.raises(InputError, match='exists; pass overwrite=True'): write_volume(f, sample('uint8', seed=1), VolumeMeta('uint8'))
    assert f.read_bytes() == before
    write_volume(f, sample('uint8', seed=1), VolumeMeta('uint8'), overwrite=True)
    np.testing.assert_array_equal(read_volume(f)[0], sample('uint8', seed=1))


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    f = tmp_path / 'o.tif'
    write_volume(f, sample('uint8'), VolumeMeta('uint8'))
    before = f.read_bytes()
    def broken(path, data, **kw):
        Path(path).write_bytes(b'II*\0partial')
        raise OSError('disk full')
    monkeypatch.setattr(io.tifffile, 'imwrite', broken)
    with pytest.raises(OSError, match='disk full'):
        write_volume(f, sample('uint8', seed=1), VolumeMeta('uint8'), overwrite=True)
    assert f.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['o.tif']


def test_write_creates_parent(tmp_path):
    write_volume(tmp_path / 'a' / 'b' / 'o.tif', sample('uint8'), VolumeMeta('uint8'))
    assert (tmp_path / 'a' / 'b' / 'o.tif').is_file()


# ---------------------------------------------------------------- slice writer

@pytest.mark.parametrize('dtype', DTYPES)
def test_slice_writer(tmp_path, dtype):
    a = sample(dtype)
    meta = VolumeMeta(dtype, 3, (2.0, 1.0, 1.0), 'um', 'streamed')
    with SliceWriter(tmp_path / 'o.tif', a.shape, meta) as w:
        for z in reversed(range(len(a))): w[z] = a[z]          # any order
        assert not (tmp_path / 'o.tif').exists()              # nothing at the target before success
    b, m = read_volume(tmp_path / 'o.tif')
    np.testing.assert_array_equal(b, a)
    assert m == VolumeMeta(dtype, 3, m.voxel_size, 'um', 'streamed')
    np.testing.assert_allclose(m.voxel_size, (2.0, 1.0, 1.0))
    with open_volume(tmp_path / 'o.tif') as r: assert r.memmapped   # written contiguous


def test_slice_writer_scaling_and_2d(tmp_path):
    a = sample('int16', (1, 16, 16)); sc = IntensityScaling.from_dtype('int16')
    with SliceWriter(tmp_path / 'o.tif', a.shape, VolumeMeta('int16', 2), scaling=sc) as w: w[0] = sc.forward(a[0])
    b, m = read_volume(tmp_path / 'o.tif')
    np.testing.assert_array_equal(b, a); assert m.ndim == 2


def test_slice_writer_failure_leaves_nothing(tmp_path):
    f = tmp_path / 'o.tif'
    write_volume(f, sample('uint8'), VolumeMeta('uint8'))
    before = f.read_bytes()
    with pytest.raises(RuntimeError, match='boom'):
        with SliceWriter(f, (7, 24, 32), VolumeMeta('uint8'), overwrite=True) as w:
            w[0] = sample('uint8')[0]; raise RuntimeError('boom')
    assert f.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['o.tif']
    with pytest.raises(InputError, match='6 of 7 slices never written'):
        with SliceWriter(f, (7, 24, 32), VolumeMeta('uint8'), overwrite=True) as w: w[3] = sample('uint8')[0]
    assert f.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ['o.tif']


def test_slice_writer_errors(tmp_path):
    with pytest.raises(InputError, match='exists'):
        (tmp_path / 'x.tif').touch(); SliceWriter(tmp_path / 'x.tif', (2, 4, 4), VolumeMeta('uint8')).__enter__()
    with pytest.raises(InputError, match=r'slice 1 has shape \(4, 5\), expected \(4, 4\)'):
        with SliceWriter(tmp_path / 'y.tif', (2, 4, 4), VolumeMeta('uint8')) as w: w[1] = np.zeros((4, 5), np.uint8)
    with pytest.raises(InputError, match='cannot be stored losslessly'):
        with SliceWriter(tmp_path / 'z.tif', (2, 4, 4), VolumeMeta('uint8')) as w: w[0] = np.zeros((4, 4), np.float32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['x.tif']


# ---------------------------------------------------------------- intensity scaling

@pytest.mark.parametrize('dtype', ['uint8', 'uint16', 'int16'])
def test_scaling_exact_for_every_integer(dtype):
    info = np.iinfo(dtype); every = np.arange(info.min, int(info.max) + 1).astype(dtype)
    sc = IntensityScaling.from_dtype(dtype)
    y = sc.forward(every)
    assert y.dtype == np.float32 and y.min() == -1 and y.max() == 1
    np.testing.assert_array_equal(sc.inverse(y), every)
    assert sc.inverse(y).dtype == np.dtype(dtype)


def test_scaling_float32_within_eps():
    a = np.random.default_rng(0).uniform(-1000, 3000, (3, 20, 20)).astype(np.float32)
    sc = IntensityScaling.from_percentiles(a, 0, 100)
    b = sc.inverse(sc.forward(a))
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a, rtol=0, atol=4000 * 4 * np.finfo(np.float32).eps)
    sc01 = IntensityScaling.from_dtype('float32')
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(sc01.inverse(sc01.forward(x)), x, atol=4 * np.finfo(np.float32).eps)


@settings(max_examples=60, deadline=None)
@given(lo=st.integers(0, 60000), width=st.integers(1, 5000), seed=st.integers(0, 2**16))
def test_scaling_percentile_window_exact_inside(lo, width, seed):
    hi = min(lo + width, 65535)
    if hi <= lo: return
    sc = IntensityScaling('uint16', lo, hi, 'range')
    a = np.random.default_rng(seed).integers(0, 65536, 500).astype(np.uint16)
    b = sc.inverse(sc.forward(a))
    np.testing.assert_array_equal(b, np.clip(a, lo, hi))


def test_scaling_percentiles_and_dict():
    a = np.random.default_rng(0).integers(1000, 5000, (4, 50, 50)).astype(np.uint16)
    sc = IntensityScaling.from_percentiles(a, 1, 99)
    np.testing.assert_allclose([sc.low, sc.high], np.percentile(a, [1, 99]))
    assert (sc.dtype, sc.method, sc.percentiles) == ('uint16', 'percentiles', (1.0, 99.0))
    d = sc.to_dict()
    assert d == {'dtype': 'uint16', 'low': sc.low, 'high': sc.high, 'method': 'percentiles', 'percentiles': [1.0, 99.0], 'window': None}
    assert IntensityScaling.from_dict(d) == sc
    y = sc.forward(a)
    assert -1 <= y.min() and y.max() <= 1 and np.isclose(np.mean(y <= -1), 0.01, atol=0.005)


def test_scaling_percentiles_subsample_large():
    a = np.random.default_rng(0).integers(0, 256, (40, 640, 640)).astype(np.uint8)   # > 16 M voxels
    sc = IntensityScaling.from_percentiles(a, 5, 95)
    assert abs(sc.low - 12.75) < 1.5 and abs(sc.high - 242.25) < 1.5


def test_scaling_percentiles_from_reader(tmp_path):
    a = np.random.default_rng(0).normal(2000, 300, (80, 64, 64)).astype(np.uint16)
    tifffile.imwrite(tmp_path / 'a.tif', a, imagej=True, metadata={'axes': 'ZYX'})
    ref = IntensityScaling.from_percentiles(a, 2, 98)
    with open_volume(tmp_path / 'a.tif') as r: sc = IntensityScaling.from_percentiles(r, 2, 98)
    assert sc.dtype == 'uint16' and abs(sc.low - ref.low) < 10 and abs(sc.high - ref.high) < 10
    tifffile.imwrite(tmp_path / 'n.tif', np.full((3, 4, 4), np.nan, np.float32), imagej=True, metadata={'axes': 'ZYX'})
    with open_volume(tmp_path / 'n.tif') as r, pytest.raises(InputError, match='n.tif: float data holds'):
        IntensityScaling.from_percentiles(r)


def test_scaling_torch():
    torch = pytest.importorskip('torch')
    a = sample('uint8', (2, 8, 8)); sc = IntensityScaling.from_dtype('uint8')
    t = sc.forward(torch.from_numpy(a))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), sc.forward(a), atol=1e-6)
    np.testing.assert_array_equal(sc.inverse(t), a)


def test_scaling_errors():
    with pytest.raises(InputError, match='span no grey levels'): IntensityScaling.from_percentiles(np.full((4, 4), 7, np.uint8))
    with pytest.raises(InputError, match='percentiles: need 0 <= low < high <= 100'): IntensityScaling.from_percentiles(np.arange(9), 50, 10)
    with pytest.raises(InputError, match='need finite low < high'): IntensityScaling('uint8', 5, 5)
    with pytest.raises(InputError, match='unsupported dtype float64'): IntensityScaling.from_dtype('float64')
    with pytest.raises(InputError, match='missing keys'): IntensityScaling.from_dict({'dtype': 'uint8'})
    with pytest.raises(InputError, match='NaN'): IntensityScaling.from_percentiles(np.array([0, np.nan, 1], np.float32))


# ---------------------------------------------------------------- bad input: one clear InputError each

def _truncate(f, frac=0.5):
    raw = f.read_bytes(); f.write_bytes(raw[:int(len(raw) * frac)])


BAD = {
    'not_tiff': (lambda f: f.write_text('plain text, not pixels'), 'not a TIFF file'),
    'png_bytes': (lambda f: f.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 100), 'not a TIFF file'),
    'zero_bytes': (lambda f: f.touch(), 'empty file (0 bytes)'),
    'header_only': (lambda f: (tifffile.imwrite(f, sample('uint8')), _truncate(f, 0.0005)), 'truncated or corrupt'),
    'truncated_imagej': (lambda f: (tifffile.imwrite(f, sample('uint16'), imagej=True), _truncate(f)), 'truncated'),
    'truncated_plain': (lambda f: (tifffile.imwrite(f, sample('uint16'), photometric='minisblack'), _truncate(f)), 'truncated'),
    'truncated_zlib': (lambda f: (tifffile.imwrite(f, sample('uint16', (7, 64, 64)), photometric='minisblack',
                                                   compression='zlib'), _truncate(f, 0.7)), 'truncated'),
    'rgb': (lambda f: tifffile.imwrite(f, sample('uint8', (16, 16, 3)), photometric='rgb'), 'RGB/multi-sample image'),
    'rgb_stack': (lambda f: tifffile.imwrite(f, sample('uint8', (4, 16, 16, 3)), photometric='rgb'), 'RGB/multi-sample image'),
    'multichannel': (lambda f: tifffile.imwrite(f, sample('uint8', (2, 16, 16)), imagej=True,
                                                metadata={'axes': 'CYX', 'mode': 'composite'}), 'multi-channel image'),
    'multichannel_ome': (lambda f: tifffile.imwrite(f, sample('uint8', (3, 16, 16)), ome=True, photometric='minisblack',
                                                    metadata={'axes': 'CYX'}), 'multi-channel image'),
    'zc_4d': (lambda f: tifffile.imwrite(f, sample('uint8', (3, 2, 16, 16)), imagej=True, metadata={'axes': 'ZCYX'}), '4D data'),
    '4d': (lambda f: tifffile.imwrite(f, sample('uint8', (2, 3, 16, 16)), imagej=True, metadata={'axes': 'TZYX'}), '4D data'),
    'nan': (lambda f: tifffile.imwrite(f, np.where(sample('float32') > 0.5, np.nan, 0).astype(np.float32), photometric='minisblack'), 'NaN'),
    'inf': (lambda f: tifffile.imwrite(f, np.full((3, 8, 8), np.inf, np.float32), photometric='minisblack'), 'float data holds 0 NaN and'),
    'complex': (lambda f: tifffile.imwrite(f, np.zeros((8, 8), np.complex64)), 'complex data'),
    'bool': (lambda f: tifffile.imwrite(f, np.zeros((8, 8), bool)), 'binary (bool) image'),
    'float64': (lambda f: tifffile.imwrite(f, np.zeros((8, 8), np.float64)), 'unsupported dtype float64'),
    'int32': (lambda f: tifffile.imwrite(f, np.zeros((8, 8), np.int32)), 'unsupported dtype int32'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_file(tmp_path, case):
    make, problem = BAD[case]
    f = tmp_path / f'{case}.tif'
    make(f)
    for fn in (read_volume, volume_info, lambda p: read_slice(p, 0)):
        if case in ('nan', 'inf') and fn is volume_info: continue   # pixels are not read for the header
        with pytest.raises(InputError) as e: fn(f)
        msg = str(e.value)
        assert msg.startswith(f'{f}: ') and problem in msg, msg
        assert '\n' not in msg


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match='no such file or folder'): read_volume(tmp_path / 'nope.tif')


def test_folder_errors(tmp_path):
    with pytest.raises(InputError, match='folder holds no .tif/.tiff files'): read_volume(tmp_path)
    tifffile.imwrite(tmp_path / 's1.tif', sample('uint8', (10, 10)))
    tifffile.imwrite(tmp_path / 's2.tif', sample('uint8', (10, 12)))
    with pytest.raises(InputError, match=r's2.tif: slice shape \(10, 12\) differs from s1.tif \(10, 10\)'): read_volume(tmp_path)
    tifffile.imwrite(tmp_path / 's2.tif', sample('uint16', (10, 10)))
    with pytest.raises(InputError, match='s2.tif: slice dtype uint16 differs'): volume_info(tmp_path)
    tifffile.imwrite(tmp_path / 's2.tif', sample('uint8', (3, 10, 10)), photometric='minisblack')
    with pytest.raises(InputError, match='s2.tif: expected a 2D slice'): read_volume(tmp_path)
    (tmp_path / 's2.tif').write_text('junk')
    with pytest.raises(InputError, match='s2.tif: not a TIFF file'): read_volume(tmp_path)


def test_slice_index_errors(tmp_path):
    tifffile.imwrite(tmp_path / 'a.tif', sample('uint8'), photometric='minisblack')
    with pytest.raises(InputError, match=r'slice index 7 out of range for axis 0 \(size 7\)'): read_slice(tmp_path / 'a.tif', 7)
    with pytest.raises(InputError, match='axis: must be 0, 1 or 2'): read_slice(tmp_path / 'a.tif', 0, axis=3)


def test_patch_too_small():
    check_patch_size((5, 256, 300), 256, 'v.tif')
    with pytest.raises(InputError, match='v.tif: slice 200x300 is smaller than the requested patch 256x256'):
        check_patch_size((5, 200, 300), 256, 'v.tif')
    with pytest.raises(InputError, match='slice 5x300 is smaller'): check_patch_size((5, 256, 300), 256, 'v.tif', axes=(0, 1))


def test_write_bad_input(tmp_path):
    with pytest.raises(InputError, match='expected a 2D image or a 3D volume'):
        write_volume(tmp_path / 'a.tif', np.zeros((2, 2, 4, 4), np.uint8), VolumeMeta('uint8'))
    with pytest.raises(InputError, match='unsupported dtype float64'):
        write_volume(tmp_path / 'a.tif', np.zeros((4, 4)), VolumeMeta('float64'))
    with pytest.raises(InputError, match='NaN'):
        write_volume(tmp_path / 'a.tif', np.full((4, 4), np.nan, np.float32), VolumeMeta('float32'))
    with pytest.raises(InputError, match='scaling records dtype uint8 but meta.dtype is uint16'):
        write_volume(tmp_path / 'a.tif', np.zeros((4, 4), np.float32), VolumeMeta('uint16'), scaling=IntensityScaling.from_dtype('uint8'))
    tmp_path.joinpath('d.tif').mkdir()
    with pytest.raises(InputError, match='is a folder'): write_volume(tmp_path / 'd.tif', np.zeros((4, 4), np.uint8), VolumeMeta('uint8'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d.tif']


@pytest.mark.parametrize('layout', ['imagej', 'zlib', 'folder'])
def test_read_slice_memory_bounded(tmp_path, layout):
    "Reading one slice allocates a few planes at most (page decoding buffers), never the volume."
    import tracemalloc
    a = sample('uint16', (60, 128, 192))
    f = tmp_path / 'v.tif'
    if layout == 'imagej': tifffile.imwrite(f, a, imagej=True)
    elif layout == 'zlib': tifffile.imwrite(f, a, photometric='minisblack', compression='zlib')
    else:
        f = tmp_path / 'slices'; f.mkdir()
        for z in range(len(a)): tifffile.imwrite(f / f'{z:03d}.tif', a[z])
    with open_volume(f) as r:
        for axis in range(3):
            tracemalloc.start()
            s = r.slice(17, axis)
            peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
            np.testing.assert_array_equal(s, np.take(a, 17, axis=axis))
            assert peak < 8 * a[0].nbytes, (axis, peak, a[0].nbytes)   # a few planes (decoding), not 60
