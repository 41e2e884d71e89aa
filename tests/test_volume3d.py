"`sr3xct infer` on volumes: isotropic by default (shapes, voxel sizes, the in-memory result), `--in-plane`, `--simulate-lr`, 2D inputs unchanged, bad input one line."
import numpy as np
import pytest
import torch
from sr3xct.resample import degrade3d
from sr3xct.data import default_scaling
from sr3xct.diffusion import GaussianDiffusion
from sr3xct.models import SRModel
from sr3xct.io import VolumeMeta, read_volume, write_volume
from sr3xct.models import save_model, load_model
from sr3xct.predictor import Predictor
from sr3xct.unet import UNet
from sr3xct.volume3d import fidelity3d
from cli_helpers import run



@pytest.fixture
def t(tmp_path):
    "A tiny two-stage x4 model file (random weights, the predictor's tail not zero), an LR volume (4, 8, 8) of 8 um voxels, an HR one of 2 um."
    torch.manual_seed(0); torch.set_num_threads(1)
    p = Predictor(4, 8, 1).eval()
    torch.nn.init.normal_(p.tail.weight, std=0.05)
    u = UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32)
    save_model(SRModel(4, p, GaussianDiffusion(u, n_timestep=100, residual=True).eval()), tmp_path / 'tiny.safetensors')
    rng = np.random.default_rng(0)
    write_volume(tmp_path / 'lr.tif', rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), VolumeMeta('uint8', 3, (8., 8., 8.), 'um'))
    write_volume(tmp_path / 'hr.tif', rng.integers(0, 256, (8, 16, 16), dtype=np.uint8), VolumeMeta('uint8', 3, (2., 2., 2.), 'um'))
    return tmp_path


def infer(t, inp, out, *extra):
    return run('infer', '--checkpoint', t / 'tiny.safetensors', '--input', t / inp, '--output', t / out, '--no-progress',
               '--threads', '1', '--precision', 'fp32', '--overlap', '8', *extra)


def in_memory(t, lr, sc=None):
    "The isotropic fidelity of an LR volume (uint8, or a tensor in [-1, 1] with `sc`) computed in memory, as uint8 (the scan's window)."
    sc = sc or default_scaling(lr)
    x = torch.from_numpy(sc.forward(lr)) if isinstance(lr, np.ndarray) else lr
    return sc.inverse(fidelity3d(load_model(t / 'tiny.safetensors'), x, 4, precision='fp32').numpy())


def close(a, b): return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1   # a rounding tie at most


def test_volume_comes_out_isotropic(t):
    rc, _, err = infer(t, 'lr.tif', 'sr.tif', '--slab', '1')
    assert rc == 0, err
    sr, meta = read_volume(t / 'sr.tif')
    assert sr.shape == (16, 32, 32) and sr.dtype == np.uint8 and meta.voxel_size == (2., 2., 2.) and meta.unit == 'um'
    assert 'x4 on all three axes, mode fidelity' in err
    assert close(sr, in_memory(t, read_volume(t / 'lr.tif')[0]))   # slabs of one LR slice join exactly


def test_in_plane_keeps_z(t):
    rc, _, err = infer(t, 'lr.tif', 'sr.tif', '--in-plane')
    assert rc == 0, err
    sr, meta = read_volume(t / 'sr.tif')
    assert sr.shape == (4, 32, 32) and meta.voxel_size == (8., 2., 2.) and 'x4 in-plane' in err
    rc, _, err = infer(t, 'lr.tif', 'ax1.tif', '--in-plane', '--axis', '1')
    assert rc == 0, err
    assert read_volume(t / 'ax1.tif')[0].shape == (16, 8, 32)


def test_simulate_lr_averages_all_three_axes(t):
    rc, _, err = infer(t, 'hr.tif', 'sim.tif', '--simulate-lr')
    assert rc == 0, err
    sim, meta = read_volume(t / 'sim.tif')
    assert sim.shape == (8, 16, 16) and meta.voxel_size == (2., 2., 2.)   # the HR input's grid and voxels
    hr = read_volume(t / 'hr.tif')[0]
    sc = default_scaling(hr, scale=4, degradation='3d')   # the window of the simulated LR
    assert np.abs(sim.astype(int) - in_memory(t, degrade3d(torch.from_numpy(sc.forward(hr)), 4), sc).astype(int)).max() <= 1
    rc, _, err = infer(t, 'hr.tif', 'sim2d.tif', '--simulate-lr', '--in-plane')
    assert rc == 0, err
    assert read_volume(t / 'sim2d.tif')[0].shape == (8, 16, 16) and not np.array_equal(read_volume(t / 'sim2d.tif')[0], sim)
    write_volume(t / 'six.tif', hr[:6], VolumeMeta('uint8', 3))
    rc, _, err = infer(t, 'six.tif', 'x.tif', '--simulate-lr')
    assert rc == 2 and 'six.tif: shape (6, 16, 16): every size must be a multiple of scale 4' in err and err.count('\n') == 1
    assert not (t / 'x.tif').exists() and not list(t.glob('.x.tif*'))


def test_2d_image_unchanged(t):
    write_volume(t / 'img.tif', read_volume(t / 'lr.tif')[0][0], VolumeMeta('uint8', 2))
    rc, _, err = infer(t, 'img.tif', 'a.tif')
    assert rc == 0, err
    rc, _, err = infer(t, 'img.tif', 'b.tif', '--in-plane')
    assert rc == 0, err
    a, meta = read_volume(t / 'a.tif')
    assert a.shape == (1, 32, 32) and meta.ndim == 2 and np.array_equal(a, read_volume(t / 'b.tif')[0]) and 'in-plane' in err


def test_realism_and_mean_on_the_isotropic_grid(t):
    rc, _, err = infer(t, 'lr.tif', 'm.tif', '--mode', 'mean', '--n-samples', '2', '--steps', '2')
    assert rc == 0, err
    m, s = read_volume(t / 'm.tif')[0], read_volume(t / 'm_std.tif')[0]
    assert m.shape == s.shape == (16, 32, 32) and s.dtype == np.float32 and (s >= 0).all()


@pytest.mark.parametrize('extra, message', [
    (('--axis', '1'), '--axis: picks the slice planes of --in-plane'),
    (('--slab', '0'), 'slab: must be a positive integer'),
    (('--mode', 'mean', '--n-samples', '1'), "mode 'mean' needs at least 2 samples"),
])
def test_bad_input_is_one_line(t, extra, message):
    rc, _, err = infer(t, 'lr.tif', 'x.tif', *extra)
    assert rc == 2 and message in err and err.count('\n') == 1, err
    assert not (t / 'x.tif').exists() and not list(t.glob('.x.tif*'))


def test_torchrun_two_processes_match_one_isotropic(t):
    "`torchrun --nproc_per_node 2 -m sr3xct.cli infer` on a volume (realism, slabs of 1 LR slice): the ranks take slabs in turn; the file equals one process's."
    import os, subprocess, sys
    args = lambda out: ['infer', '--checkpoint', t / 'tiny.safetensors', '--input', t / 'lr.tif', '--output', t / out, '--no-progress',
                        '--threads', '1', '--precision', 'fp32', '--overlap', '8', '--mode', 'realism', '--steps', '2', '--slab', '1']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'sr3xct.cli',
                        *map(str, args('ddp.tif'))], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rc, _, err = run(*args('one.tif'))
    assert rc == 0, err
    assert (t / 'ddp.tif').read_bytes() == (t / 'one.tif').read_bytes()
    assert not list(t.glob('.ddp*'))
