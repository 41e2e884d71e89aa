"`sr3xct infer` and `sr3xct eval` on the command line: outputs, exit status 2 with one line for bad input, nothing left behind."
import os, subprocess, sys
import numpy as np
import pytest
import torch
import yaml
from sr3xct.io import VolumeMeta, write_volume, read_volume, IntensityScaling
from sr3xct.unet import UNet
from sr3xct.checkpoint import save_checkpoint
from sr3xct.data import sandstone
from sr3xct.resample import degrade
from cli_helpers import run

TINY = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32, use_cross_attn=False)


@pytest.fixture
def job(tmp_path):
    torch.manual_seed(0); torch.set_num_threads(1)
    net = UNet(**TINY)
    save_checkpoint(tmp_path / 'm.pt', {'model': net.state_dict(), 'ema': net.state_dict(),
                                        'config': {'model': net.config, 'data': {'scale': 4}, 'diffusion': {'n_timestep': 100}}})
    (tmp_path / 'x4.yaml').write_text(yaml.safe_dump({'scale': 4, 'device': 'cpu', 'sampling': {'steps': 2, 'tile': 32, 'overlap': 8, 'precision': 'fp32'}}))
    hr = sandstone()[0][:2, :32, :32]
    sc = IntensityScaling.from_dtype('uint8')
    lr = sc.inverse(degrade(torch.from_numpy(sc.forward(hr))[:, None], 4)[:, 0])
    meta = VolumeMeta('uint8', 3, (4., 4., 4.), 'um')
    write_volume(tmp_path / 'hr.tif', hr, meta); write_volume(tmp_path / 'lr.tif', lr, meta.scaled(0.25))
    return tmp_path


def base(t, out='sr.tif'):
    return ['infer', '-c', t / 'x4.yaml', '--checkpoint', t / 'm.pt', '--input', t / 'lr.tif', '--output', t / out, '--no-progress', '--in-plane']


def test_infer_then_eval(job):
    rc, _, err = run(*base(job), '--n-samples', '2', '--precision', 'bf16')
    assert rc == 0, err
    sr, meta = read_volume(job / 'sr.tif')
    assert sr.shape == (2, 32, 32) and sr.dtype == np.uint8 and meta.voxel_size == (4., 4., 4.)
    assert read_volume(job / 'sr_std.tif')[0].dtype == np.float32
    rc, out, err = run('eval', '--sr', job / 'sr.tif', '--hr', job / 'hr.tif', '--lr', job / 'lr.tif', '--out', job / 'rep')
    assert rc == 0, err
    assert '| psnr |' in out and sorted(p.name for p in (job / 'rep').iterdir()) == ['report.json', 'report.md', 'report.png']


def test_simulate_lr_and_overwrite(job):
    rc, _, err = run(*base(job), '--input', job / 'hr.tif', '--simulate-lr')
    assert rc == 0, err
    assert read_volume(job / 'sr.tif')[0].shape == (2, 32, 32)
    rc, _, err = run(*base(job))
    assert rc == 2 and 'sr.tif: exists' in err and err.count('\n') == 1
    assert run(*base(job), '--overwrite')[0] == 0


@pytest.mark.parametrize('extra, message', [
    (['--set', 'scale=8'], 'm.pt: trained for scale 4, but scale 8'),
    (['--output', 'lr.tif', '--overwrite'], 'would overwrite the input'),
    (['--input', 'missing.tif'], 'missing.tif: no such file'),
    (['--sampler', 'ddim', '--steps', '0'], 'steps'),
    (['--precision', 'fp16'], 'fp16 needs a CUDA device'),
])
def test_infer_bad_input(job, extra, message):
    extra = [job / e if e.endswith('.tif') else e for e in extra]
    rc, _, err = run(*base(job), *extra)
    assert rc == 2 and message in err and err.count('\n') == 1, err
    assert not (job / 'sr.tif').exists() and not list(job.glob('.sr*'))


def test_model_config_must_match_checkpoint(job):
    train = {'model': {**TINY, 'inner_channel': 16}, 'data': {'scale': 4, 'patch': 32}}
    (job / 'train.yaml').write_text(yaml.safe_dump(train))
    rc, _, err = run(*base(job), '--model-config', job / 'train.yaml')
    assert rc == 2 and 'the model config does not match the checkpoint: unet.inner_channel is 16' in err
    (job / 'train8.yaml').write_text(yaml.safe_dump({'model': TINY, 'data': {'scale': 8, 'patch': 32}}))
    rc, _, err = run(*base(job), '--model-config', job / 'train8.yaml')
    assert rc == 2 and 'the model config is for scale 8, the checkpoint for 4' in err
    assert not (job / 'sr.tif').exists()


def test_reference_checkpoint_needs_model_config(shared, job):
    ref = shared / 'fixtures' / 'sr3_reference_checkpoint' / 'I1000_E3'
    rc, _, err = run(*base(job), '--checkpoint', ref)
    assert rc == 2 and 'records no model settings' in err
    cfg = torch.load(shared / 'fixtures' / 'sr3_reference_unet_small.pt', weights_only=True)['config']
    (job / 'ref.yaml').write_text(yaml.safe_dump({'model': {**cfg, 'use_cross_attn': False}, 'data': {'scale': 4, 'patch': 32}}))
    rc, _, err = run(*base(job), '--checkpoint', ref, '--model-config', job / 'ref.yaml')
    assert rc == 0, err
    assert read_volume(job / 'sr.tif')[0].shape == (2, 32, 32)


def test_eval_shape_mismatch_exit_2(job):
    write_volume(job / 'small.tif', np.zeros((2, 16, 16), np.uint8), VolumeMeta('uint8', 3))
    rc, _, err = run('eval', '--sr', job / 'small.tif', '--hr', job / 'hr.tif', '--out', job / 'rep')
    assert rc == 2 and 'small.tif: shape (2, 16, 16) does not match' in err and err.count('\n') == 1
    assert not (job / 'rep').exists()


def test_process_exit_status(job):
    "The console entry point exits with 2 on bad input (a real process)."
    r = subprocess.run([sys.executable, '-m', 'sr3xct.cli', 'eval', '--sr', str(job / 'nope.tif'), '--hr', str(job / 'hr.tif'),
                        '--out', str(job / 'rep')], capture_output=True, text=True)
    assert r.returncode == 2 and 'nope.tif' in r.stderr


def test_torchrun_two_processes_match_one(job):
    "`torchrun --nproc_per_node 2 -m sr3xct.cli infer`: slices split over 2 gloo processes, outputs equal to one process's."
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}   # same thread count on both sides: CPU kernels reduce in thread order
    args = [str(a) for a in base(job, 'ddp.tif')] + ['--n-samples', '2', '--batch-size', '1']
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'sr3xct.cli', *args],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    torch.set_num_threads(1)
    rc, _, err = run(*base(job, 'one.tif'), '--n-samples', '2', '--batch-size', '1')
    assert rc == 0, err
    for a, b in (('ddp.tif', 'one.tif'), ('ddp_std.tif', 'one_std.tif')):
        np.testing.assert_array_equal(read_volume(job / a)[0], read_volume(job / b)[0])
    assert not list(job.glob('.ddp*'))
