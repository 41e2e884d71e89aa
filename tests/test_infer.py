"Volume inference: a real kill -9 mid-run and resume, torchrun-style ranks (gloo), axes, 2D inputs, bad input."
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sr3xct.errors import InputError
from sr3xct.io import VolumeMeta, read_volume, write_volume
from sr3xct.unet import UNet
from sr3xct.checkpoint import save_checkpoint
from sr3xct.infer import tiled_apply
from sr3xct.volume_job import super_resolve_volume
from sr3xct.models import load_diffusion

TINY = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32, use_cross_attn=False)
KW = dict(overlap=8, steps=2, progress=False)


def _ckpt(path, scale=4, model=TINY, seed=0, config=True):
    torch.manual_seed(seed)
    net = UNet(**model)
    cfg = {'model': net.config, 'data': {'scale': scale}, 'diffusion': {'schedule': 'linear', 'n_timestep': 100}} if config else None
    return save_checkpoint(path, {'model': net.state_dict(), 'config': cfg})


def _lr(path, shape=(5, 12, 12), seed=0, meta=None):
    a = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    write_volume(path, a if len(shape) == 3 else a, meta or VolumeMeta('uint8', len(shape), (8., 8., 8.) if len(shape) == 3 else None, 'um'))
    return path


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_kill_and_resume(tmp_path):
    "A process killed with SIGKILL mid-volume leaves no output; the rerun computes only the missing slices and equals a clean run."
    ck, lr = _ckpt(tmp_path / 'm.pt'), _lr(tmp_path / 'lr.tif', (8, 12, 12))
    script = (f"import torch, time; torch.set_num_threads(1)\n"
              f"from sr3xct.volume_job import super_resolve_volume\n"
              f"from sr3xct.models import load_diffusion\n"
              f"d, _ = load_diffusion({str(ck)!r})\n"
              f"m = d.model; f = m.forward\n"
              f"def slow(*a):\n    time.sleep(0.05); return f(*a)\n"
              f"m.forward = slow\n"
              f"super_resolve_volume(d, {str(lr)!r}, {str(tmp_path / 'sr.tif')!r}, 4, overlap=8, steps=2, progress=False)\n")
    p = subprocess.Popen([sys.executable, '-c', script])
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and p.poll() is None:
        prog = list(tmp_path.glob('.sr.tif.progress-*.json'))
        if prog:
            try: done = json.loads(prog[0].read_text())['done']
            except ValueError: done = []
            if len(done) >= 2: break
        time.sleep(0.05)
    assert p.poll() is None, 'the run finished before it could be killed'
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert not (tmp_path / 'sr.tif').exists() and (tmp_path / '.sr.tif.partial').exists()
    done = json.loads(next(tmp_path.glob('.sr.tif.progress-*.json')).read_text())['done']
    assert 2 <= len(done) < 8
    d, _ = load_diffusion(ck)
    r = super_resolve_volume(d, lr, tmp_path / 'sr.tif', 4, **KW)
    assert r['computed'] == 8 - len(done)
    clean = super_resolve_volume(d, lr, tmp_path / 'clean.tif', 4, **KW)
    np.testing.assert_array_equal(read_volume(r['output'])[0], read_volume(clean['output'])[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clean.tif', 'lr.tif', 'm.pt', 'sr.tif']


def test_changed_job_starts_over(tmp_path):
    "A partial output of another job (other steps) is not reused."
    ck, lr = _ckpt(tmp_path / 'm.pt'), _lr(tmp_path / 'lr.tif', (3, 8, 8))
    d, _ = load_diffusion(ck)
    calls = []
    orig = d.model.forward
    def boom(*a):
        calls.append(1)
        if len(calls) == 3: raise KeyboardInterrupt
        return orig(*a)
    d.model.forward = boom
    with pytest.raises(KeyboardInterrupt): super_resolve_volume(d, lr, tmp_path / 'sr.tif', 4, batch_size=1, **KW)
    assert len(json.loads(next(tmp_path.glob('.sr.tif.progress-*.json')).read_text())['done']) == 1
    d.model.forward = orig
    r = super_resolve_volume(d, lr, tmp_path / 'sr.tif', 4, batch_size=1, **{**KW, 'steps': 3})
    assert r['computed'] == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _rank_worker(rank, world, port, ck, lr, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        d, _ = load_diffusion(ck)
        r = super_resolve_volume(d, lr, out, 4, n_samples=2, batch_size=2, **KW)
        with open(f'{out}.rank{rank}', 'w') as f: f.write(str(r['computed']))
    finally: dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path):
    "Slices split across 2 gloo ranks: the same mean and std volumes as one process, each rank doing part of the work."
    ck, lr = _ckpt(tmp_path / 'm.pt'), _lr(tmp_path / 'lr.tif', (5, 8, 8))
    mp.spawn(_rank_worker, args=(2, _free_port(), str(ck), str(lr), str(tmp_path / 'ddp.tif')), nprocs=2, join=True)
    d, _ = load_diffusion(ck)
    one = super_resolve_volume(d, lr, tmp_path / 'one.tif', 4, n_samples=2, batch_size=2, **KW)
    np.testing.assert_array_equal(read_volume(tmp_path / 'ddp.tif')[0], read_volume(one['output'])[0])
    np.testing.assert_array_equal(read_volume(tmp_path / 'ddp_std.tif')[0], read_volume(one['std'])[0])
    counts = [int((tmp_path / f'ddp.tif.rank{r}').read_text()) for r in (0, 1)]
    assert sorted(counts) == [2, 3]


def test_axes_2d_and_simulate_lr(tmp_path):
    "Slices across axis 1 scale Z and X; a 2D image gives a 2D image; simulate_lr keeps the HR shape."
    ck = _ckpt(tmp_path / 'm.pt')
    d, _ = load_diffusion(ck)
    lr = _lr(tmp_path / 'lr.tif', (4, 3, 6))
    r = super_resolve_volume(d, lr, tmp_path / 'ax1.tif', 4, axis=1, **KW)
    a, m = read_volume(r['output'])
    assert a.shape == (16, 3, 24) and m.voxel_size == (2., 8., 2.)
    img = _lr(tmp_path / 'img.tif', (10, 14))
    a, m = read_volume(super_resolve_volume(d, img, tmp_path / 'img_sr.tif', 4, **KW)['output'])
    assert a.shape == (1, 40, 56) and m.ndim == 2
    hr = _lr(tmp_path / 'hr.tif', (2, 32, 40))
    a, m = read_volume(super_resolve_volume(d, hr, tmp_path / 'sim.tif', 4, simulate_lr=True, **KW)['output'])
    assert a.shape == (2, 32, 40) and m.voxel_size == (8., 8., 8.)   # the HR input's voxel size, not HR / scale
    with pytest.raises(InputError, match='multiples of scale 4'):
        super_resolve_volume(d, _lr(tmp_path / 'odd.tif', (2, 30, 40)), tmp_path / 'x.tif', 4, simulate_lr=True, **KW)


def test_bad_input_leaves_nothing(tmp_path):
    "Wrong scale, another architecture, config/checkpoint mismatch, bad input file: one InputError naming the file, no output."
    ck = _ckpt(tmp_path / 'm.pt')
    with pytest.raises(InputError, match=r'm\.pt: trained for scale 4, but scale 8'): load_diffusion(ck, scale=8)
    with pytest.raises(InputError, match=r'm\.pt: the model config does not match the checkpoint: unet\.channel_mults'):
        load_diffusion(ck, {'unet': {**TINY, 'channel_mults': [1, 2, 4]}})
    bare = _ckpt(tmp_path / 'bare.pt', config=False)
    with pytest.raises(InputError, match=r'bare\.pt: weights do not fit the model'):
        load_diffusion(bare, {'unet': {**TINY, 'inner_channel': 16}})
    with pytest.raises(InputError, match='records no model settings'): load_diffusion(bare)
    d, _ = load_diffusion(ck)
    (tmp_path / 'junk.tif').write_bytes(b'not a tiff at all')
    with pytest.raises(InputError, match=r'junk\.tif'): super_resolve_volume(d, tmp_path / 'junk.tif', tmp_path / 'o.tif', 4, **KW)
    with pytest.raises(InputError, match='sampler'): super_resolve_volume(d, tmp_path / 'junk.tif', tmp_path / 'o.tif', 4, sampler='euler', **KW)
    with pytest.raises(InputError, match='overlap'): super_resolve_volume(d, _lr(tmp_path / 'lr.tif'), tmp_path / 'o.tif', 4, tile=32, overlap=20)
    assert not list(tmp_path.glob('o*')) and not list(tmp_path.glob('.o*'))


def test_reference_checkpoint(shared, tmp_path):
    "The SR3 reference pair loads with the UNet settings given, and super-resolves."
    ref = shared / 'fixtures' / 'sr3_reference_checkpoint' / 'I1000_E3'
    cfg = torch.load(shared / 'fixtures' / 'sr3_reference_unet_small.pt', weights_only=True)['config']
    with pytest.raises(InputError, match='records no model settings'): load_diffusion(ref)
    d, info = load_diffusion(ref, {'unet': {**cfg, 'use_cross_attn': False}}, scale=4)
    assert info['format'] == 'sr3-reference' and d.n_timestep == 2000
    r = super_resolve_volume(d, _lr(tmp_path / 'lr.tif', (1, 8, 8)), tmp_path / 'sr.tif', 4, **KW)
    assert read_volume(r['output'])[0].shape == (1, 32, 32)


def test_tiled_apply_batches_and_ramp():
    "Identity blending over many tiles is exact for a ramp, with at most batch_size tiles per call."
    sizes = []
    def ident(t): sizes.append(len(t)); return t
    y, x = torch.meshgrid(torch.arange(300.), torch.arange(170.), indexing='ij')
    img = (0.003 * y + 0.002 * x - 0.5)[None, None].repeat(2, 1, 1, 1)
    torch.testing.assert_close(tiled_apply(ident, img, 64, 24, 7), img, atol=1e-5, rtol=0)
    assert max(sizes) == 7 and sum(sizes) == 2 * 7 * 4
