"Bad folders and files, TIFF inputs, and DataLoader workers for `sr3xct.data` (what the notebook cannot hold well)."
import json
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sr3xct.errors import InputError
from sr3xct.io import VolumeMeta, write_volume
from sr3xct.data import (PairedFolderDataset, VolumePatchDataset, prepare, read_image, synthetic_soil, sandstone,
                         degrade, upsample)
from sr3xct.augment import PairedAugment, AugmentConfig


@pytest.fixture(scope='module')
def soil():
    return synthetic_soil((6, 64, 64), seed=0)


@pytest.fixture
def prepared(tmp_path, soil):
    prepare(soil[:2], tmp_path / 'p', scale=4, patch=32)
    return tmp_path / 'p'


def test_prepare_layout_and_json(prepared, soil):
    info = json.loads((prepared / 'prepare.json').read_text())
    assert info['count'] == 2 * 4 and (info['l_res'], info['r_res'], info['bits']) == (8, 32, 8)
    assert sorted(p.name for p in (prepared / 'sr_8_32').iterdir()) == [f'{i:05d}.png' for i in range(8)]
    assert info['scalings'][0]['method'] == 'scan'   # the scan's window, as the models see it
    ds = PairedFolderDataset(prepared)
    lr, cond, hr = ds[7]
    assert lr.shape == (1, 8, 8) and cond.shape == hr.shape == (1, 32, 32)


def test_prepare_refuses_then_overwrites(prepared, soil):
    with pytest.raises(InputError, match='not empty; pass overwrite=True'):
        prepare(soil[:2], prepared, scale=4, patch=32)
    info = prepare(soil[:1], prepared, scale=4, patch=32, overwrite=True)
    assert len(list((prepared / 'hr_32').iterdir())) == info['count'] == 4


def test_prepare_axes_stride_max_patches(tmp_path, soil):
    info = prepare(soil, tmp_path / 'a', scale=2, patch=4, stride=30, axes=(0, 1, 2), slice_step=20)
    # axis 0: slice 0 of 6 -> 3x3 tiles (stride 30 over 64); axes 1, 2: slices 0, 20, 40, 60 of 64 -> 4 x (1 x 3) tiles
    assert info['count'] == 9 + 2 * 4 * 3
    assert {p[1] for p in info['positions']} == {0, 1, 2}
    info = prepare(soil, tmp_path / 'b', scale=4, patch=32, max_patches=5)
    assert info['count'] == 5 and len(list((tmp_path / 'b' / 'lr_8').iterdir())) == 5


def test_prepare_16bit_and_float(tmp_path):
    f = synthetic_soil((2, 32, 32), seed=1, dtype='float32')
    info = prepare(f, tmp_path / 'f', scale=2, patch=16)
    assert info['bits'] == 16 and info['scalings'][0]['method'] == 'scan'
    with Image.open(tmp_path / 'f' / 'hr_16' / '00000.png') as im: assert im.mode.startswith('I;16')
    with pytest.raises(InputError, match='bits: must be 8 or 16'):
        prepare(f, tmp_path / 'g', scale=2, patch=16, bits=12)


def test_prepare_from_tiff_and_bad_inputs(tmp_path, soil):
    tif = write_volume(tmp_path / 'soil.tif', soil, VolumeMeta('uint8', 3, (1.0, 1.0, 1.0), 'um'))
    info = prepare([tif], tmp_path / 't', scale=8, patch=64)
    assert info['sources'] == [str(tif)] and info['count'] == 6
    with pytest.raises(InputError, match='missing.tif'): prepare(tmp_path / 'missing.tif', tmp_path / 'u')
    with pytest.raises(InputError, match='smaller than the requested patch'): prepare(soil, tmp_path / 'u', patch=128)
    with pytest.raises(InputError, match='not a positive multiple of scale 8'): prepare(soil, tmp_path / 'u', patch=60)
    with pytest.raises(InputError, match='axes'): prepare(soil, tmp_path / 'u', patch=32, axes=(3,))
    (tmp_path / 'file').write_text('x')
    with pytest.raises(InputError, match='file: exists and is not a folder'): prepare(soil, tmp_path / 'file', patch=32)


def _write_reference_style(root, n=3, l=8, r=32, rgb=True):
    "A folder as the SR3 reference's prepare_data.py makes it: RGB PNGs, PIL bicubic resizes."
    for d in (f'hr_{r}', f'lr_{l}', f'sr_{l}_{r}'): (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).convert('RGB' if rgb else 'L')
        hr = img.resize((r, r), Image.BICUBIC); lr = img.resize((l, l), Image.BICUBIC); sr = lr.resize((r, r), Image.BICUBIC)
        for d, im in ((f'hr_{r}', hr), (f'lr_{l}', lr), (f'sr_{l}_{r}', sr)): im.save(root / d / f'{str(i).zfill(5)}.png')


def test_reads_reference_made_folders(tmp_path):
    _write_reference_style(tmp_path)
    ds = PairedFolderDataset(tmp_path, 8, 32)
    assert len(ds) == 3
    lr, cond, hr = ds[2]
    ref = np.asarray(Image.open(tmp_path / 'hr_32' / '00002.png').convert('RGB'), np.float32)[..., 0] / 255 * 2 - 1
    np.testing.assert_allclose(hr[0].numpy(), ref, atol=1e-6)
    assert lr.shape == (1, 8, 8) and -1 <= cond.min() and cond.max() <= 1


def test_bad_folders(tmp_path, prepared):
    with pytest.raises(InputError, match='nope: no such folder'): PairedFolderDataset(tmp_path / 'nope')
    (prepared / 'hr_64').mkdir()
    with pytest.raises(InputError, match=r'cannot tell r_res .*\[32, 64\]'): PairedFolderDataset(prepared)
    with pytest.raises(InputError, match='hr_64: folder holds no images'): PairedFolderDataset(prepared, 8, 64)
    (prepared / 'hr_64').rmdir()
    for f in (prepared / 'sr_8_32').iterdir(): f.rename(f.with_name('x' + f.name))
    with pytest.raises(InputError, match='sr_8_32: file names differ'): PairedFolderDataset(prepared)


def test_bad_images(tmp_path, prepared):
    ds = PairedFolderDataset(prepared)
    hr0 = prepared / 'hr_32' / '00000.png'
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(hr0)
    with pytest.raises(InputError, match='00000.png: image is 16x16, expected 32x32'): ds[0]
    rgb = np.zeros((32, 32, 3), np.uint8); rgb[..., 0] = 200
    Image.fromarray(rgb).save(hr0)
    with pytest.raises(InputError, match='colour image'): ds[0]
    data = (prepared / 'hr_32' / '00001.png').read_bytes()
    (prepared / 'hr_32' / '00001.png').write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match='00001.png: unreadable image'): ds[1]
    (prepared / 'hr_32' / '00002.png').write_bytes(b'')
    with pytest.raises(InputError, match='00002.png: unreadable image'): ds[2]
    Image.fromarray(np.zeros((32, 32), np.float32)).save(prepared / 'hr_32' / '00003.tif')
    with pytest.raises(InputError, match='unsupported image mode'): read_image(prepared / 'hr_32' / '00003.tif')
    with pytest.raises(IndexError): ds[len(ds)]


def _batches(ds, workers):
    dl = DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    return [b for b in dl]


def test_volume_dataset_same_items_in_worker_processes():
    ds = VolumePatchDataset(synthetic_soil((32, 48, 48), seed=1), patch=32, scale=4, axes=(0, 1, 2), length=12, seed=3,
                            augment=PairedAugment(AugmentConfig(noise_p=1, blur_p=1, intensity_p=1)))
    a, b = _batches(ds, 0), _batches(ds, 2)
    for x, y in zip(a, b):
        for s, t in zip(x, y): assert torch.equal(s, t)
    assert a[0][0].shape == (4, 1, 8, 8) and a[0][2].shape == (4, 1, 32, 32)


def test_volume_dataset_inputs(tmp_path, soil):
    tif = write_volume(tmp_path / 'v.tif', soil, VolumeMeta('uint8'))
    from_path = VolumePatchDataset([tif], patch=32, scale=4, length=5)
    from_array = VolumePatchDataset([soil], patch=32, scale=4, length=5)
    assert torch.equal(from_path[4][2], from_array[4][2])
    mm = np.lib.format.open_memmap(tmp_path / 'v.npy', mode='w+', dtype=np.uint8, shape=soil.shape); mm[:] = soil
    assert torch.equal(VolumePatchDataset([mm], patch=32, scale=4, length=5)[4][2], from_array[4][2])
    with pytest.raises(InputError, match='split'): VolumePatchDataset(soil, patch=32, scale=4, split='eval')
    with pytest.raises(InputError, match='axes'): VolumePatchDataset(soil, patch=32, scale=4, axes=(3,))
    with pytest.raises(InputError, match='length'): VolumePatchDataset(soil, patch=32, scale=4, length=0)
    with pytest.raises(InputError, match='scaling: 2 scalings for 1 volumes'):
        VolumePatchDataset(soil, patch=32, scale=4, scaling=['dtype', 'dtype'])
    bad = soil.astype(np.float32); bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match='NaN'): VolumePatchDataset([bad], patch=32, scale=4)


def test_sandstone_patches_cover_the_sample():
    vol, meta = sandstone()
    ds = VolumePatchDataset(vol, patch=48, scale=8, axes=(0, 1, 2), length=30, seed=0)
    lr, cond, hr = ds[0]
    torch.testing.assert_close(lr, degrade(hr, 8)); torch.testing.assert_close(cond, upsample(lr, 8))


def test_synthetic_soil_bad_args():
    with pytest.raises(InputError, match='dtype'): synthetic_soil((4, 16, 16), dtype='int8')
    with pytest.raises(InputError, match='water'): synthetic_soil((4, 16, 16), water=1.0)
    with pytest.raises(InputError, match='aspect'): synthetic_soil((4, 16, 16), aspect=0)
    with pytest.raises(InputError, match='noise'): synthetic_soil((4, 16, 16), noise=-0.1)
    v, ph = synthetic_soil((4, 16, 16), grain_radius=3, return_phases=True)   # small grains: full-resolution grid
    assert v.shape == ph.shape == (4, 16, 16)
