"""CUDA paths: fp16 with a gradient scaler, bf16, torch.compile, GPU/CPU agreement, GPU checkpoints on CPU, `sr3xct infer --device cuda`.

Skipped where no CUDA device is present (CI has none); run on a GPU machine with `pytest tests/test_cuda.py`."""
import math, subprocess, sys

import numpy as np
import pytest
import torch
import yaml

from sr3xct.checkpoint import load_checkpoint
from sr3xct.config import load_config, build_trainer
from sr3xct.diffusion import GaussianDiffusion, sample
from sr3xct.unet import UNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device (none here)')

TINY = dict(inner_channel=16, norm_groups=8, channel_mults=[1, 2], attn_res=[8], res_blocks=1, image_size=16)


def tiny_cfg(tmp_path, precision, compile=False, n_iter=30, device='cuda'):
    cfg = load_config('train/16_64/small', [
        f'out_dir={tmp_path}/run', 'model.inner_channel=16', 'model.norm_groups=8', 'model.channel_mults=[1, 2]',
        'model.attn_res=[8]', 'model.image_size=16', 'data.patch=16', 'data.synthetic_shape=[16, 32, 32]', 'data.length=64',
        'data.batch_size=4', f'train.n_iter={n_iter}', f'train.precision={precision}', f'train.compile={str(compile).lower()}',
        f'train.device={device}', 'log.val_freq=15', 'log.save_freq=15', 'log.tensorboard=false', 'log.progress=false', 'val.n_images=2',
        'val.steps=4', 'diffusion.n_timestep=200'])
    return cfg


def _train(tmp_path, precision, compile=False):
    t = build_trainer(tiny_cfg(tmp_path, precision, compile))
    before = {k: v.detach().clone() for k, v in t.net.state_dict().items()}
    t.fit()
    ck = load_checkpoint(sorted((tmp_path / 'run' / 'checkpoints').glob('*.pt'))[-1])
    return t, before, ck


@pytest.mark.parametrize('precision', ['fp32', 'bf16', 'fp16'])
def test_training_on_cuda(tmp_path, precision):
    t, before, ck = _train(tmp_path, precision)
    assert ck['iter'] == 30
    assert all(torch.isfinite(v).all() for v in ck['model'].values())
    changed = sum(not torch.equal(before[k].cpu(), ck['model'][k]) for k in before)
    assert changed > len(before) // 2
    if precision == 'fp16': assert ck.get('grad_scaler') and ck['grad_scaler']['scale'] > 0
    log = [l for l in (tmp_path / 'run' / 'log.jsonl').read_text().splitlines() if 'val/psnr' in l]
    assert log, 'validation ran and logged PSNR'


def test_compiled_training_matches_checkpoint_format(tmp_path):
    t, before, ck = _train(tmp_path, 'bf16', compile=True)
    assert set(ck['model']) == set(before)       # compiled modules save the plain keys
    net = UNet(**{**TINY, 'use_cross_attn': True}); net.load_state_dict(ck['model'])


def test_unet_cuda_matches_cpu():
    torch.backends.cudnn.allow_tf32 = False; torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    net = UNet(**TINY).eval()
    x, g = torch.randn(2, 2, 16, 16), torch.rand(2, 1)
    with torch.no_grad(): a = net(x, g); b = net.cuda()(x.cuda(), g.cuda()).cpu()
    assert ((a - b).norm() / a.norm()) < 1e-4


def test_sampling_reproducible_on_cuda():
    torch.manual_seed(0)
    d = GaussianDiffusion(UNet(**TINY).eval(), n_timestep=200).cuda()
    cond = torch.rand(2, 1, 16, 16, device='cuda') * 2 - 1
    for sm in ('ddim', 'ddpm', 'dpm++2m'):
        a = sample(d, cond, 8, sm, eta=1.0, generator=torch.Generator('cuda').manual_seed(3))
        b = sample(d, cond, 8, sm, eta=1.0, generator=torch.Generator('cuda').manual_seed(3))
        assert torch.equal(a, b) and a.device.type == 'cuda'


def test_infer_cli_on_cuda(tmp_path):
    import tifffile
    t, _, ck = _train(tmp_path, 'bf16')
    ckpt = sorted((tmp_path / 'run' / 'checkpoints').glob('*.pt'))[-1]
    lr = (np.random.default_rng(0).random((3, 8, 8)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / 'lr.tif', lr, photometric='minisblack')
    outs = {}
    for dev in ('cuda', 'cpu'):
        r = subprocess.run([sys.executable, '-m', 'sr3xct.cli', 'infer', '-c', 'inference/x8', '--checkpoint', ckpt,
                            '--input', tmp_path / 'lr.tif', '--output', tmp_path / f'sr_{dev}.tif', '--device', dev,
                            '--precision', 'fp32', '--steps', '4', '--no-progress', '--set', 'scale=4', '--tile', '16', '--overlap', '4', '--in-plane'],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs[dev] = tifffile.imread(tmp_path / f'sr_{dev}.tif')
    assert outs['cuda'].shape == outs['cpu'].shape == (3, 32, 32)
    assert abs(outs['cuda'].mean() - outs['cpu'].mean()) < 10   # other RNG streams, same model: same grey level
