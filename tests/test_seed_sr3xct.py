"SR3-XCT models (the seed project's `I{iter}_E{epoch}_gen.safetensors` and its YAML): reproduced, run, converted, fine-tuned."
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from sr3xct.data import sandstone
from sr3xct.demo import lr_of
from sr3xct.diffusion import p_mean, SCHEDULES
from sr3xct.infer import super_resolve
from sr3xct.io import VolumeMeta, write_volume, read_volume
from sr3xct.models import load_diffusion, load_model
from cli_helpers import run


@pytest.fixture(autouse=True)
def _threads(): torch.set_num_threads(1)


@pytest.fixture(scope='module')
def seed(shared):
    return shared / 'fixtures' / 'seed_sr3xct'


@pytest.fixture(scope='module')
def golden(seed):
    return torch.load(seed / 'golden.pt', weights_only=True)


@pytest.mark.parametrize('name', ['I2000_E8', 'I2000_E8_gen.safetensors'])
def test_network_output_reproduced(seed, golden, name):
    "Through `load_diffusion`: the UNet's output to 1e-5 (relative), by prefix or by file."
    d, info = load_diffusion(seed / name, seed / 'config.yaml')
    assert (info['scale'], info['format'], d.n_timestep) == (4, 'sr3-reference', 5000)
    assert sorted(f'denoise_fn.{k}' for k in d.model.state_dict()) == sorted(k for k in golden['keys'] if k.startswith('denoise_fn.'))
    with torch.no_grad():
        y = d.model(torch.cat([golden['condition'], golden['x']], 1), golden['noise_level'])
    assert ((y - golden['y']).norm() / golden['y'].norm()).item() < 1e-5


def test_schedule_and_reverse_step_reproduced(seed, golden):
    "The schedule (float64 vs their float32 buffer) to 1e-6 and the reverse-step means at t = 4999, 2500, 10 to 1e-6."
    d, _ = load_diffusion(seed / 'I2000_E8', seed / 'config.yaml')
    assert (d.alpha_bar64 - golden['alphas_cumprod'].double()).abs().max() < 1e-6
    assert sorted(golden['posterior_mean']) == [10, 2500, 4999]
    for t, mean in golden['posterior_mean'].items():
        got = p_mean(d, golden['condition'], golden['x'], t)
        assert (got - mean).abs().max() < 1e-6, t


def test_wrong_head_count_is_caught_by_the_golden_output(seed, golden, tmp_path):
    "The SR3 reference code's 1-head attention (`n_head: 1`) loads the same weights but gives other outputs."
    cfg = yaml.safe_load((seed / 'config.yaml').read_text())
    cfg['model']['unet']['n_head'] = 1
    (tmp_path / 'one_head.yaml').write_text(yaml.safe_dump(cfg))
    d, _ = load_diffusion(seed / 'I2000_E8', tmp_path / 'one_head.yaml')
    with torch.no_grad():
        y = d.model(torch.cat([golden['condition'], golden['x']], 1), golden['noise_level'])
    assert ((y - golden['y']).norm() / golden['y'].norm()).item() > 1e-2


def test_every_schedule_builds_and_samples(seed, tmp_path):
    "Every schedule kind of that code builds a diffusion whose sampler gives finite images (jsd ends at alpha_bar 0)."
    cfg = yaml.safe_load((seed / 'config.yaml').read_text())
    lr = torch.rand(1, 1, 4, 4) * 2 - 1
    for kind in SCHEDULES:
        cfg['model']['beta_schedule']['val'] = {'schedule': kind, 'n_timestep': 100, 'linear_start': 1e-4, 'linear_end': 2e-2}
        (tmp_path / f'{kind}.yaml').write_text(yaml.safe_dump(cfg))
        m = load_model(seed / 'I2000_E8', model_config=tmp_path / f'{kind}.yaml')
        sr, _ = super_resolve(m, lr, 4, steps=3, generator=torch.Generator().manual_seed(0), mode='realism', tile=16, overlap=0)
        assert sr.shape == (1, 1, 16, 16) and torch.isfinite(sr).all(), kind


def test_cli_infer_convert_end_to_end(seed, tmp_path):
    "`sr3xct infer --checkpoint PREFIX --model-config THEIR.yaml` (no -c), then `convert` to a model file that runs alone."
    write_volume(tmp_path / 'lr.tif', lr_of(sandstone()[0][:2, :64, :64]), VolumeMeta('uint8', 3, (8., 8., 8.), 'um'))
    common = ['--input', tmp_path / 'lr.tif', '--steps', '3', '--no-progress', '--threads', '1', '--in-plane']
    rc, _, err = run('infer', '--checkpoint', seed / 'I2000_E8', '--model-config', seed / 'config.yaml', '--output', tmp_path / 'sr.tif', *common)
    assert rc == 0, err
    a, meta = read_volume(tmp_path / 'sr.tif')
    assert a.shape == (2, 64, 64) and a.dtype == np.uint8 and meta.voxel_size == (8., 2., 2.) and 'mode realism' in err
    rc, _, err = run('convert', '--checkpoint', seed / 'I2000_E8', '--model-config', seed / 'config.yaml', '-o', tmp_path / 'theirs.safetensors')
    assert rc == 0, err
    rc, _, err = run('infer', '--checkpoint', tmp_path / 'theirs.safetensors', '--output', tmp_path / 'sr2.tif', *common)
    assert rc == 0, err
    assert np.array_equal(read_volume(tmp_path / 'sr2.tif')[0], a)   # same network, schedule and seed
    m = load_model(tmp_path / 'theirs.safetensors')
    assert m.scale == 4 and m.diffusion.model.config['attn_heads'] == 4 and m.diffusion.n_timestep == 5000


def test_bad_yaml_and_foreign_safetensors_one_line(seed, tmp_path):
    "A malformed YAML, a YAML of another model and a safetensors file of another architecture: exit 2, one line."
    write_volume(tmp_path / 'lr.tif', np.zeros((1, 16, 16), np.uint8), VolumeMeta('uint8', 3))
    def infer(ck, mc):
        return run('infer', '--checkpoint', ck, '--model-config', mc, '--input', tmp_path / 'lr.tif',
                   '--output', tmp_path / 'sr.tif', '--steps', '2', '--no-progress')
    (tmp_path / 'broken.yaml').write_text('model:\n  unet: [1, 2\n')
    cfg = yaml.safe_load((seed / 'config.yaml').read_text())
    cases = {'broken.yaml': 'broken.yaml: not valid YAML'}
    cfg2 = yaml.safe_load(yaml.safe_dump(cfg)); cfg2['model']['beta_schedule']['val']['schedule'] = 'sigmoid'
    (tmp_path / 'sched.yaml').write_text(yaml.safe_dump(cfg2)); cases['sched.yaml'] = "model.beta_schedule.val.schedule: 'sigmoid' is not one of"
    cfg3 = yaml.safe_load(yaml.safe_dump(cfg)); cfg3['model']['unet']['inner_channel'] = 32
    (tmp_path / 'wide.yaml').write_text(yaml.safe_dump(cfg3)); cases['wide.yaml'] = 'I2000_E8_gen.safetensors: weights do not fit the model'
    cfg4 = yaml.safe_load(yaml.safe_dump(cfg)); cfg4['model']['beta_schedule']['train']['n_timestep'] = 2000
    (tmp_path / 'other_sched.yaml').write_text(yaml.safe_dump(cfg4)); cases['other_sched.yaml'] = 'is not the training schedule its model config describes'
    for name, msg in cases.items():
        rc, _, err = infer(seed / 'I2000_E8', tmp_path / name)
        assert rc == 2 and msg in err and err.count('\n') == 1, (name, err)
    sd = load_file(str(seed / 'I2000_E8_gen.safetensors'))
    sd['denoise_fn.downs.0.weight'] = torch.zeros(32, 2, 3, 3)
    save_file(sd, str(tmp_path / 'I5_E1_gen.safetensors'))
    rc, _, err = infer(tmp_path / 'I5_E1', seed / 'config.yaml')
    assert rc == 2 and 'I5_E1_gen.safetensors: weights do not fit the model' in err and err.count('\n') == 1, err
    save_file({'conv.weight': torch.zeros(2, 2)}, str(tmp_path / 'other.safetensors'))
    rc, _, err = infer(tmp_path / 'other.safetensors', seed / 'config.yaml')
    assert rc == 2 and 'other.safetensors: not an sr3xct checkpoint nor an SR3 reference pair' in err and err.count('\n') == 1, err
    assert not (tmp_path / 'sr.tif').exists()


def test_train_init_finetunes_their_model(seed, tmp_path):
    "`sr3xct train --init PREFIX --model-config THEIR.yaml`: their weights and train schedule, no cross-attention unless asked."
    args = ['train', '-c', 'train/16_64/small', '--init', seed / 'I2000_E8', '--model-config', seed / 'config.yaml',
            '--set', 'data.source=sandstone', '--set', 'data.patch=32', '--set', 'data.batch_size=1', '--set', 'train.n_iter=1',
            '--set', 'log.val_freq=0', '--set', 'log.save_freq=1', '--set', 'train.threads=1', '--set', 'loss.w_perceptual=0']
    rc, _, err = run(*args, '--set', f'out_dir={tmp_path}/run')
    assert rc == 0, err
    ck = torch.load(tmp_path / 'run' / 'checkpoints' / 'iter_00000001.pt', weights_only=True)
    assert ck['constructors']['unet']['use_cross_attn'] is False and ck['constructors']['unet']['attn_heads'] == 4
    assert ck['constructors']['diffusion']['n_timestep'] == 5000 and ck['constructors']['scale'] == 4
    theirs = load_diffusion(seed / 'I2000_E8', seed / 'config.yaml')[0].model.state_dict()
    assert set(ck['model']) == set(theirs)
    # cross-attention added for fine-tuning starts as the identity: same output as their network before any step
    from sr3xct.config import load_config, _from_init, load_init
    cfg = load_config('train/16_64/small', [f'init={seed / "I2000_E8"}', f'init_config={seed / "config.yaml"}', 'init_cross_attn=true'])
    net = _from_init(cfg, load_init(cfg), 'test')[0].eval()
    assert net.config['use_cross_attn']
    g = torch.load(seed / 'golden.pt', weights_only=True)
    with torch.no_grad(): y = net(torch.cat([g['condition'], g['x']], 1), g['noise_level'])
    assert ((y - g['y']).norm() / g['y'].norm()).item() < 1e-5
