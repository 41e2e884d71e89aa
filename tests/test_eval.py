"The evaluation report: files written, numbers consistent with sr3xct.metrics, bad inputs refused before writing."
import json
import numpy as np
import pytest
import torch
from sr3xct.errors import InputError
from sr3xct.io import VolumeMeta, write_volume, IntensityScaling
from sr3xct.data import sandstone
from sr3xct.resample import degrade
from sr3xct.metrics import psnr, porosity, otsu_threshold
from sr3xct.report import evaluate, REPORT_FILES


@pytest.fixture
def triplet(tmp_path):
    hr = sandstone()[0][:3, :64, :64]
    sc = IntensityScaling.from_dtype('uint8')
    lr = sc.inverse(degrade(torch.from_numpy(sc.forward(hr))[:, None], 4)[:, 0])
    sr = np.clip(hr.astype(int) + np.random.default_rng(1).integers(-8, 9, hr.shape), 0, 255).astype(np.uint8)
    meta = VolumeMeta('uint8', 3, (3.0, 3.0, 3.0), 'um')
    write_volume(tmp_path / 'hr.tif', hr, meta); write_volume(tmp_path / 'sr.tif', sr, meta)
    write_volume(tmp_path / 'lr.tif', lr, meta.scaled(0.25))
    return tmp_path, hr, sr


def test_report_files_and_numbers(triplet):
    tmp, hr, sr = triplet
    rep = evaluate(tmp / 'sr.tif', tmp / 'hr.tif', tmp / 'lr.tif', tmp / 'out')
    assert sorted(p.name for p in (tmp / 'out').iterdir()) == sorted(REPORT_FILES)
    j = json.loads((tmp / 'out' / 'report.json').read_text())   # strict JSON: no NaN/Infinity tokens
    assert j['columns'] == ['bicubic', 'sr', 'hr'] and j['scale'] == 4
    assert j['metrics']['psnr']['sr'] == pytest.approx(psnr(sr, hr, 255))
    t = otsu_threshold(hr)
    assert j['metrics']['porosity']['hr'] == pytest.approx(porosity(hr, t))
    assert j['metrics']['psnr']['sr'] > j['metrics']['psnr']['bicubic']   # the noisy copy beats the blur here
    c = j['curves']['hr']
    assert len(c['radius']) == len(c['fraction']) and sum(c['fraction']) == pytest.approx(1)
    assert c['s2'][0] == pytest.approx(porosity(hr, t), abs=0.02)   # S2(0) is the porosity
    md = (tmp / 'out' / 'report.md').read_text()
    assert '| psnr |' in md and 'lr.tif' in md
    assert (tmp / 'out' / 'report.png').read_bytes()[:4] == b'\x89PNG'


def test_identical_sr_is_strict_json(triplet):
    tmp, hr, _ = triplet
    evaluate(tmp / 'hr.tif', tmp / 'hr.tif', out_dir=tmp / 'same')
    j = json.loads((tmp / 'same' / 'report.json').read_text())
    assert j['metrics']['psnr']['sr'] == 'inf' and j['columns'] == ['sr', 'hr']


def test_bad_inputs_write_nothing(triplet):
    tmp, hr, _ = triplet
    meta = VolumeMeta('uint8', 3)
    write_volume(tmp / 'other.tif', hr[:2], meta)
    with pytest.raises(InputError, match=r'sr\.tif: shape \(3, 64, 64\) does not match the HR volume .*other\.tif'):
        evaluate(tmp / 'sr.tif', tmp / 'other.tif', out_dir=tmp / 'bad')
    write_volume(tmp / 'lr_bad.tif', hr[:, :10, :10], meta)
    with pytest.raises(InputError, match=r'lr_bad\.tif: shape'):
        evaluate(tmp / 'sr.tif', tmp / 'hr.tif', tmp / 'lr_bad.tif', out_dir=tmp / 'bad')
    write_volume(tmp / 'hrf.tif', hr.astype(np.float32), VolumeMeta('float32', 3))
    write_volume(tmp / 'srf.tif', hr.astype(np.float32), VolumeMeta('float32', 3))
    with pytest.raises(InputError, match='data range'): evaluate(tmp / 'srf.tif', tmp / 'hrf.tif', out_dir=tmp / 'bad')
    with pytest.raises(InputError, match='no such file'): evaluate(tmp / 'nope.tif', tmp / 'hr.tif', out_dir=tmp / 'bad')
    assert not (tmp / 'bad').exists()
    evaluate(tmp / 'srf.tif', tmp / 'hrf.tif', out_dir=tmp / 'f', data_range=255.0)
    (tmp / 'x').mkdir(); (tmp / 'x' / 'report.png').write_bytes(b'keep')
    with pytest.raises(InputError, match=r'report\.png: exists'): evaluate(tmp / 'sr.tif', tmp / 'hr.tif', out_dir=tmp / 'x')
    assert sorted(p.name for p in (tmp / 'x').iterdir()) == ['report.png']


def test_single_images(tmp_path):
    "2D images (one slice) are compared as images."
    hr = sandstone()[0][5, :64, :64]
    sc = IntensityScaling.from_dtype('uint8')
    lr = sc.inverse(degrade(torch.from_numpy(sc.forward(hr))[None, None], 2)[0, 0])
    meta = VolumeMeta('uint8', 2)
    write_volume(tmp_path / 'hr.tif', hr, meta); write_volume(tmp_path / 'lr.tif', lr, meta)
    rep = evaluate(tmp_path / 'hr.tif', tmp_path / 'hr.tif', tmp_path / 'lr.tif', tmp_path / 'out')
    assert rep['shape'] == (64, 64) and rep['scale'] == 2 and rep['metrics']['ssim']['sr'] == pytest.approx(1)


def test_std_units_and_thin_volume_notes(triplet, capsys):
    "Issue 14 item 12: the std beside the SR is found, the curves are in the table's unit, nan correlation lengths are explained."
    from sr3xct.cli import main
    tmp, hr, sr = triplet
    write_volume(tmp / 'sr_std.tif', np.abs(sr.astype(np.float32) - hr), VolumeMeta('float32', 3, (3.0, 3.0, 3.0), 'um'))
    assert main(['eval', '--sr', str(tmp / 'sr.tif'), '--hr', str(tmp / 'hr.tif'), '--lr', str(tmp / 'lr.tif'), '--out', str(tmp / 'o')]) == 0
    j = json.loads((tmp / 'o' / 'report.json').read_text())
    assert j['files']['std'] == str(tmp / 'sr_std.tif') and j['unit'] == 'um'
    assert j['curves']['hr']['radius'][0] == 3.0 and j['curves']['hr']['r'][1] == 3.0   # one voxel = 3 um
    assert 'sr_std.tif' in (tmp / 'o' / 'report.md').read_text()
    assert np.isfinite(j['metrics']['correlation_length']['hr'])   # 3 slices: in-plane lags reach far enough
    write_volume(tmp / 'bad_std.tif', np.zeros((3, 8, 8), np.float32), VolumeMeta('float32', 3))
    with pytest.raises(InputError, match=r'bad_std\.tif: shape'):
        evaluate(tmp / 'sr.tif', tmp / 'hr.tif', out_dir=tmp / 'o2', std=tmp / 'bad_std.tif')
    yy, xx = np.mgrid[:48, :48]
    big = np.where((yy - 24) ** 2 + (xx - 24) ** 2 < 30 ** 2, 0, 200).astype(np.uint8)   # one pore wider than the image
    write_volume(tmp / 'big.tif', big, VolumeMeta('uint8', 2, (3.0, 3.0, 3.0), 'um'))
    rep = evaluate(tmp / 'big.tif', tmp / 'big.tif', out_dir=tmp / 'o3')
    assert 'correlation_length nan (sr, hr): S2 has not decayed to 1/e within r <= 72 um' in (tmp / 'o3' / 'report.md').read_text()


def test_isotropic_volume_gets_tricubic_and_isotropy(tmp_path):
    "An LR volume downsampled on all three axes (what `sr3xct infer` makes of a volume): tricubic column, isotropy table."
    from sr3xct.resample import degrade3d
    hr = sandstone()[0][:16, :64, :64]
    sc = IntensityScaling.from_dtype('uint8')
    lr = sc.inverse(degrade3d(torch.from_numpy(sc.forward(hr)), 4))
    sr = np.clip(hr.astype(int) + np.random.default_rng(1).integers(-8, 9, hr.shape), 0, 255).astype(np.uint8)
    meta = VolumeMeta('uint8', 3, (3.0, 3.0, 3.0), 'um')
    write_volume(tmp_path / 'hr.tif', hr, meta); write_volume(tmp_path / 'sr.tif', sr, meta)
    write_volume(tmp_path / 'lr.tif', lr, meta.scaled(0.25))
    rep = evaluate(tmp_path / 'sr.tif', tmp_path / 'hr.tif', tmp_path / 'lr.tif', tmp_path / 'out')
    assert rep['columns'] == ['tricubic', 'sr', 'hr'] and rep['scale'] == 4
    assert set(rep['isotropy']) == {'tricubic', 'sr'} and abs(rep['isotropy']['sr']['psnr_zx'] - rep['isotropy']['sr']['psnr_yx']) < 1
    md = (tmp_path / 'out' / 'report.md').read_text()
    assert 'tricubic from LR' in md and 'PSNR on (Z, X) planes' in md
    write_volume(tmp_path / 'bad.tif', lr[:3], meta)
    with pytest.raises(InputError, match='bad.tif: shape'): evaluate(tmp_path / 'sr.tif', tmp_path / 'hr.tif', tmp_path / 'bad.tif')
