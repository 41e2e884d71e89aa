"Predict-and-refine models end to end: the packaged weights, `sr3xct infer --mode`, `sr3xct models`, `train --init`, the array API."
import numpy as np
import pytest
import torch
from sr3xct.errors import InputError
from sr3xct.data import sandstone
from sr3xct.resample import degrade3d, upsample3d
from sr3xct.demo import lr_of, soil_test
from sr3xct.io import VolumeMeta, write_volume, read_volume, IntensityScaling
from sr3xct.metrics import psnr, bicubic_upsample
from sr3xct.models import load_model, packaged_models, save_model
from sr3xct.arrays import super_resolve_array
from sr3xct.models import SRModel
from sr3xct.predictor import Predictor
from sr3xct.unet import UNet
from sr3xct.diffusion import GaussianDiffusion
from sr3xct.volume3d import fidelity3d
from cli_helpers import run

SC = IntensityScaling.from_dtype('uint8')


@pytest.fixture(autouse=True)
def _threads(): torch.set_num_threads(1)


@pytest.fixture
def tiny(tmp_path):
    "A tiny two-stage model file (random weights) and an LR volume."
    torch.manual_seed(0)
    u = UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32)
    m = SRModel(4, Predictor(4, 8, 1).eval(), GaussianDiffusion(u, n_timestep=100, residual=True).eval())
    save_model(m, tmp_path / 'tiny.safetensors')
    write_volume(tmp_path / 'lr.tif', lr_of(sandstone()[0][:2, :64, :64]), VolumeMeta('uint8', 3, (8., 8., 8.), 'um'))
    return tmp_path


def test_packaged_x4_beats_bicubic_on_held_out_slices():
    "The shipped x4 model loads from safetensors and its fidelity output beats bicubic on slices it never saw."
    assert 'x4' in packaged_models(), 'the x4 model must ship in the package'
    m = load_model(scale=4)
    assert m.modes == ('fidelity', 'realism', 'mean') and m.scale == 4
    for hr in (sandstone()[0][40:42, :248, :248], soil_test()[0][:2]):
        lr = lr_of(hr)
        sr = super_resolve_array(lr, 4, 'fidelity', checkpoint=m)
        assert sr.shape == hr.shape and sr.dtype == np.uint8
        assert psnr(sr, hr, 255) > psnr(bicubic_upsample(lr, 4), hr, 255) + 0.1


def test_infer_modes_cli(tiny):
    t = tiny
    for mode in ('fidelity', 'realism', 'mean'):
        rc, _, err = run('infer', '--checkpoint', t / 'tiny.safetensors', '--input', t / 'lr.tif', '--output', t / f'{mode}.tif',
                         '--mode', mode, '--steps', '2', '--n-samples', '2', '--overlap', '8', '--no-progress', '--threads', '1', '--in-plane')
        assert rc == 0, err
        a, meta = read_volume(t / f'{mode}.tif')
        assert a.shape == (2, 64, 64) and a.dtype == np.uint8 and meta.voxel_size == (8., 2., 2.)
        assert f'mode {mode}' in err
    assert (t / 'mean_std.tif').exists() and not (t / 'realism_std.tif').exists()
    rc, _, err = run('infer', '--checkpoint', t / 'tiny.safetensors', '--input', t / 'lr.tif', '--output', t / 'x.tif', '--scale', '8')
    assert rc == 2 and 'trained for scale 4, but scale 8' in err and err.count('\n') == 1
    rc, _, err = run('infer', '--checkpoint', t / 'tiny.safetensors', '--input', t / 'lr.tif', '--output', t / 'x.tif', '--threads', '0')
    assert rc == 2 and '--threads' in err and not (t / 'x.tif').exists()


def test_infer_packaged_default_needs_no_checkpoint_or_config(tiny):
    rc, _, err = run('infer', '--input', tiny / 'lr.tif', '--output', tiny / 'sr.tif', '--no-progress')
    assert rc == 0, err
    a, meta = read_volume(tiny / 'sr.tif')   # a volume comes out isotropic by default
    assert a.shape == (8, 64, 64) and meta.voxel_size == (2., 2., 2.) and 'mode fidelity' in err and 'x4_3d.safetensors' in err
    rc, _, err = run('infer', '--input', tiny / 'lr.tif', '--output', tiny / 'plane.tif', '--no-progress', '--in-plane')
    assert rc == 0 and 'x4.safetensors' in err   # in-plane: the model trained on in-plane block averages


def test_packaged_x4_3d_beats_tricubic_on_a_held_out_block(shared):
    "The shipped isotropic model: trained on 3D-degraded planes, its fused fidelity beats tricubic by > 1 dB on soil slices it never saw."
    assert packaged_models()['x4_3d']['isotropic'], 'the x4_3d model must ship in the package'
    m = load_model(scale=4, isotropic=True)
    assert m.degradation == '3d' and m.modes == ('fidelity', 'realism', 'mean') and m.scale == 4
    hr = read_volume(shared / 'data' / 'soil_beanbucket_pnnl_100x500x500_u8.tif')[0][80:100, 186:314, 186:314]   # held out of training
    lr = degrade3d(torch.from_numpy(SC.forward(hr)), 4)
    sr = SC.inverse(fidelity3d(m, lr, 4, precision='fp32').numpy())
    assert psnr(sr, hr, 255) > psnr(SC.inverse(upsample3d(lr, 4).numpy()), hr, 255) + 1


def test_models_lists_packaged_models_and_cards():
    rc, out, _ = run('models')
    lines = out.splitlines()
    assert rc == 0 and [l.split()[0] for l in lines] == sorted(packaged_models())
    for s in (2, 4, 8):
        assert any(l.startswith(f'x{s}  x{s}  in-plane') for l in lines) and any(l.startswith(f'x{s}_3d  x{s}  isotropic 3D') for l in lines)
    for name in packaged_models():   # every packaged model has a card with its held-out figures
        rc, out, _ = run('models', '--card', name)
        assert rc == 0 and 'held-out' in out.lower(), name
    rc, _, err = run('models', '--card', 'x3')
    assert rc == 2 and "no model card 'x3'" in err


def test_train_init_finetunes_a_model_file(tiny, tmp_path):
    "`sr3xct train --init MODEL`: the model's architecture and weights, its predictor as the frozen base."
    args = ['train', '-c', 'train/16_64/refine_x4', '--init', tiny / 'tiny.safetensors', '--set', f'out_dir={tmp_path}/run',
            '--set', 'data.source=sandstone', '--set', 'data.patch=32', '--set', 'data.batch_size=2', '--set', 'train.n_iter=2',
            '--set', 'log.val_freq=0', '--set', 'log.save_freq=2', '--set', 'train.threads=1']
    rc, _, err = run(*args)
    assert rc == 0, err
    m = load_model(tmp_path / 'run' / 'checkpoints' / 'iter_00000002.pt')
    ref = load_model(tiny / 'tiny.safetensors')
    assert m.modes == ('fidelity', 'realism', 'mean') and m.diffusion.n_timestep == 100
    assert all(torch.equal(a, b) for a, b in zip(m.predictor.state_dict().values(), ref.predictor.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(m.diffusion.model.state_dict().values(), ref.diffusion.model.state_dict().values()))
    rc, _, err = run('train', '-c', 'train/16_64/refine_x4', '--init', tiny / 'tiny.safetensors', '--set', 'data.scale=8',
                     '--set', f'out_dir={tmp_path}/run2')   # a refiner of another scale needs that scale's predictor
    assert rc == 2 and 'is a x4 refiner; for data.scale 8 set diffusion.base' in err and not (tmp_path / 'run2').exists()


def test_array_api_keeps_dtype(tiny):
    m = load_model(tiny / 'tiny.safetensors')
    for dt in (np.uint8, np.uint16, np.float32):
        a = (np.random.default_rng(0).random((10, 12)) * 1000).astype(dt)
        out = super_resolve_array(a, 4, 'fidelity', checkpoint=m)
        assert out.shape == (40, 48) and out.dtype == dt
    with pytest.raises(InputError, match='array: .*NaN'): super_resolve_array(np.full((4, 4), np.nan, np.float32), 4, checkpoint=m)


def test_array_api_isotropic(tiny):
    "`isotropic=True`: a volume comes back `scale` times finer on all three axes, in its dtype; the same as `super_resolve3d`."
    m = load_model(tiny / 'tiny.safetensors')
    a = (np.random.default_rng(0).random((3, 5, 6)) * 255).astype(np.uint8)
    out = super_resolve_array(a, 4, 'fidelity', checkpoint=m, isotropic=True)
    assert out.shape == (12, 20, 24) and out.dtype == np.uint8
    mean, sd = super_resolve_array(a, 4, 'mean', checkpoint=m, isotropic=True, n_samples=2, steps=2)
    assert mean.shape == sd.shape == (12, 20, 24) and sd.dtype == np.float32 and (sd >= 0).all()
    with pytest.raises(InputError, match='isotropic SR needs a'): super_resolve_array(a[0], 4, checkpoint=m, isotropic=True)


def test_convert_prepare_and_python_m(tiny, tmp_path):
    "`sr3xct convert` writes a model file that loads; `sr3xct prepare` writes the SR3 layout; `python -m sr3xct` runs."
    import subprocess, sys
    from sr3xct.checkpoint import save_checkpoint
    m = load_model(tiny / 'tiny.safetensors')
    cons = {'unet': m.diffusion.model.config, 'diffusion': m.diffusion.config, 'scale': 4,
            'base': {'predictor': m.predictor.config, 'weights': m.predictor.state_dict()}}
    save_checkpoint(tmp_path / 'c.pt', {'model': m.diffusion.model.state_dict(), 'constructors': cons})
    rc, _, err = run('convert', '--checkpoint', tmp_path / 'c.pt', '-o', tmp_path / 'c.safetensors')
    assert rc == 0, err
    assert load_model(tmp_path / 'c.safetensors').modes == ('fidelity', 'realism', 'mean')
    rc, _, err = run('convert', '--checkpoint', tmp_path / 'c.pt', '-o', tmp_path / 'c.safetensors')
    assert rc == 2 and 'exists' in err
    write_volume(tmp_path / 'hr.tif', sandstone()[0][:2, :64, :64], VolumeMeta('uint8', 3))
    rc, _, err = run('prepare', '--hr', tmp_path / 'hr.tif', '--scale', '4', '--patch', '32', '--out', tmp_path / 'prep')
    assert rc == 0 and 'wrote 8 patch triplets' in err, err
    assert sorted(p.name for p in (tmp_path / 'prep').iterdir()) == ['hr_32', 'lr_8', 'prepare.json', 'sr_8_32']
    r = subprocess.run([sys.executable, '-m', 'sr3xct', 'models'], capture_output=True, text=True)
    assert r.returncode == 0 and 'x4' in r.stdout


def test_old_checkpoint_fixture_still_loads(repo):
    "A checkpoint as sr3xct wrote them before `constructors` (the training config only) rebuilds its network from that config."
    path = repo / 'tests' / 'fixtures' / 'old_checkpoint.pt'
    ck = torch.load(path, weights_only=True)
    assert 'constructors' not in ck and ck['config']['diffusion']['schedule'] == 'cosine'
    m = load_model(path)
    assert (m.scale, m.modes, m.diffusion.n_timestep, m.diffusion.config['schedule']) == (4, ('realism', 'mean'), 100, 'cosine')
    assert m.info['weights'] == 'ema' and torch.equal(m.diffusion.model.downs[0].weight, ck['ema']['downs.0.weight'])
    assert load_model(path, use_ema=False).info['weights'] == 'model'
    with pytest.raises(InputError, match='trained for scale 4, but scale 8'): load_model(path, scale=8)
