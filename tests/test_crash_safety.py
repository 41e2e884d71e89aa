"""Crashes: training and volume inference killed with SIGKILL at seeded random points and resumed end exactly where
an unbroken run ends; a checkpoint write that fails part-way (a full disk) leaves the previous checkpoint intact.

The processes kill themselves (`os.kill(os.getpid(), SIGKILL)`) at a chosen point of the loop, so no test depends
on timing."""
import errno, io, math, os, random, signal, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import sr3xct.checkpoint as ckmod
from sr3xct.checkpoint import load_checkpoint, save_checkpoint
from sr3xct.config import TrainConfig, build_trainer, from_dict
from sr3xct.io import VolumeMeta, read_volume, write_volume
from sr3xct.unet import UNet
from test_train import tiny_config

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
KILLED = -signal.SIGKILL


def run(*args, driver=None):
    "`sr3xct ARGS` in a new process; with `driver`, through that script, which arms a self-kill first."
    cmd = [sys.executable, '-c', driver] if driver else [sys.executable, '-m', 'sr3xct.cli']
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV)


# ------------------------------------------------------------------ training: 5 kills

TRAIN_DRIVER = r'''
import io, os, signal, sys
import torch
import sr3xct.train as T
from sr3xct.cli import main
kill_at, phase, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def die(): os.kill(os.getpid(), signal.SIGKILL)
real_step, real_clip, real_save = T.Trainer.one_step, T.GradClip.after_backward, torch.save
def one_step(self, batch):
    if phase == 'before' and self.state.iter + 1 == kill_at: die()   # a batch drawn, nothing computed
    real_step(self, batch)
    if phase == 'after' and self.state.iter == kill_at: die()        # iteration done, its checkpoint (if any) written
def after_backward(self, t):
    real_clip(self, t)
    if phase == 'mid' and t.state.iter + 1 == kill_at: die()         # gradients computed, weights not yet updated
def save(obj, f, *a, **k):
    if phase == 'save' and isinstance(obj, dict) and obj.get('iter') == kill_at:   # cut off while writing the checkpoint
        buf = io.BytesIO(); real_save(obj, buf, *a, **k)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2]); f.flush(); die()
    return real_save(obj, f, *a, **k)
T.Trainer.one_step, T.GradClip.after_backward, torch.save = one_step, after_backward, save
sys.exit(main(argv))
'''

N_ITER, SAVE_FREQ = 40, 4


def kill_schedule(seed: int = 8, n: int = 5) -> list[tuple[int, str]]:
    "`n` increasing (iteration, phase) kill points; 'save' points fall on checkpoint iterations."
    rng = random.Random(seed)
    phases = ['before', 'mid', 'after', 'save', rng.choice(['before', 'mid', 'after', 'save'])][:n]
    rng.shuffle(phases)
    out, k = [], 0
    for ph in phases:
        k += rng.randint(1, 5)
        if ph == 'save': k = math.ceil(k / SAVE_FREQ) * SAVE_FREQ
        out.append((k, ph))
    assert out[-1][0] < N_ITER
    return out


def test_five_sigkills_resume_exactly(tmp_path):
    "Killed at 5 seeded random points (before, inside and after a step, and while writing a checkpoint), resumed each time with `--resume auto`: the final weights, EMA, optimizer and schedule equal an unbroken run's."
    log = {'val_freq': 0, 'save_freq': SAVE_FREQ, 'keep_last': 3, 'tensorboard': False, 'progress': False}
    cfgs = {}
    for name in ('ref', 'run'):
        cfgs[name] = tmp_path / f'{name}.yaml'
        cfgs[name].write_text(yaml.safe_dump(tiny_config(tmp_path / name, train={'n_iter': N_ITER}, log=log)))
    r = run('train', '-c', cfgs['ref'])
    assert r.returncode == 0, r.stderr[-3000:]
    ck_dir = tmp_path / 'run' / 'checkpoints'
    for k, phase in kill_schedule():
        r = run(k, phase, 'train', '-c', cfgs['run'], '--resume', 'auto', driver=TRAIN_DRIVER)
        assert r.returncode == KILLED, (k, phase, r.stderr[-3000:])
        newest = max((int(p.stem.split('_')[1]) for p in ck_dir.glob('iter_*.pt')), default=0)
        assert newest == (k if phase == 'after' and k % SAVE_FREQ == 0 else (k - 1) // SAVE_FREQ * SAVE_FREQ), (k, phase)
        if phase == 'save':   # the cut-off file never took the checkpoint's name
            assert not (ck_dir / f'iter_{k:08d}.pt').exists() and list(ck_dir.glob(f'.iter_{k:08d}.pt.*.tmp'))
    r = run('train', '-c', cfgs['run'], '--resume', 'auto')
    assert r.returncode == 0 and 'resumed from' in r.stderr, r.stderr[-3000:]
    a = load_checkpoint(tmp_path / 'ref' / 'checkpoints' / f'iter_{N_ITER:08d}.pt')
    b = load_checkpoint(ck_dir / f'iter_{N_ITER:08d}.pt')
    for key in ('model', 'ema'):
        assert a[key].keys() == b[key].keys()
        for name, v in a[key].items(): assert torch.equal(v, b[key][name]), (key, name)
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        for name in ('step', 'exp_avg', 'exp_avg_sq'): assert torch.equal(sa[i][name], sb[i][name]), (i, name)
    assert a['scheduler'] == b['scheduler'] and (a['epoch'], a['batch_in_epoch'], a['n_skipped']) == (b['epoch'], b['batch_in_epoch'], b['n_skipped'])
    for name in ('losses', 'counts'): assert torch.equal(a['timestep_sampler'][name], b['timestep_sampler'][name])


# ------------------------------------------------------------------ volume inference: 4 kills

INFER_DRIVER = r'''
import os, signal, sys
from sr3xct.cli import main
kill_at, phase, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def die(): os.kill(os.getpid(), signal.SIGKILL)
import sr3xct.io as IO
calls, real_write, real_json, real_replace = [0], IO.ResumableWriter.write, IO.write_json_atomic, os.replace
hit = lambda p: calls[0] == kill_at and phase == p
def write(self, slices):
    calls[0] += 1
    if hit('computed'): die()                 # slices computed, nothing written
    real_write(self, slices)
    if hit('recorded'): die()                 # written and recorded (with --n-samples 2: maybe the mean only)
def atomic_json(path, obj):
    if hit('unrecorded'): die()               # pixels in the partial file, progress not recorded
    real_json(path, obj)
def replace(src, dst):
    if hit('progress-rename') and '.progress-' in str(src) and str(src).endswith('.tmp'): die()   # new progress written, not renamed
    real_replace(src, dst)
IO.ResumableWriter.write, IO.write_json_atomic, os.replace = write, atomic_json, replace
sys.exit(main(argv))
'''


def test_volume_inference_killed_four_times_equals_clean_run(tmp_path):
    "`sr3xct infer --n-samples 2` killed at 4 seeded random points, rerun each time: mean and std volumes equal a clean run's; nothing else left."
    torch.manual_seed(0)
    net = UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32, use_cross_attn=False)
    save_checkpoint(tmp_path / 'm.pt', {'model': net.state_dict(), 'config': {'model': net.config, 'data': {'scale': 4},
                                                                               'diffusion': {'n_timestep': 100}}})
    (tmp_path / 'x4.yaml').write_text(yaml.safe_dump({'scale': 4, 'device': 'cpu', 'sampling': {'steps': 2, 'tile': 32, 'overlap': 8, 'batch_size': 4, 'n_samples': 2, 'precision': 'fp32'}}))
    lr = np.random.default_rng(0).integers(0, 256, (6, 12, 12), dtype=np.uint8)   # 6 slices, one per network call
    write_volume(tmp_path / 'lr.tif', lr, VolumeMeta('uint8', 3, (4., 4., 4.), 'um'))
    args = lambda out: ['infer', '-c', tmp_path / 'x4.yaml', '--checkpoint', tmp_path / 'm.pt', '--input', tmp_path / 'lr.tif',
                        '--output', tmp_path / out, '--no-progress', '--in-plane']
    r = run(*args('clean.tif'))
    assert r.returncode == 0, r.stderr[-3000:]
    rng = random.Random(3)
    phases = ['computed', 'recorded', 'unrecorded', 'progress-rename']
    rng.shuffle(phases)
    for phase in phases:
        # each run is killed at one of its first 3 writes (mean or std of a slice): at least 3 slices stay to do
        r = run(rng.randint(1, 3), phase, *args('sr.tif'), driver=INFER_DRIVER)
        assert r.returncode == KILLED, (phase, r.stderr[-3000:])
        assert not (tmp_path / 'sr.tif').exists() and (tmp_path / '.sr.tif.partial').exists()
    r = run(*args('sr.tif'))
    assert r.returncode == 0, r.stderr[-3000:]
    for a, b in (('sr.tif', 'clean.tif'), ('sr_std.tif', 'clean_std.tif')):
        (x, mx), (y, my) = read_volume(tmp_path / a), read_volume(tmp_path / b)
        np.testing.assert_array_equal(x, y)
        assert mx == my
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clean.tif', 'clean_std.tif', 'lr.tif', 'm.pt', 'sr.tif',
                                                          'sr_std.tif', 'x4.yaml']


# ------------------------------------------------------------------ a full disk while writing a checkpoint

def full_disk(limit: int, only: str = ''):
    "An `open` for `sr3xct.checkpoint` whose files take `limit` bytes, then fail with ENOSPC (for names starting with `only`)."
    class FullDisk(io.FileIO):
        def write(self, b):
            room = limit - self.tell()
            if len(b) > room:
                super().write(bytes(b)[:max(room, 0)])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)
    return lambda path, mode='r', *a, **k: FullDisk(path, mode.replace('b', '')) if Path(path).name.startswith(only) else open(path, mode, *a, **k)


def enospc(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize('where', ['write-0', 'write-1k', 'write-half', 'fsync', 'rename'])
def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    p = tmp_path / 'c.pt'
    save_checkpoint(p, {'model': {'w': torch.ones(4)}, 'iter': 1})
    before = p.read_bytes(), p.stat().st_mtime_ns
    big = {'model': {'w': torch.randn(50_000)}, 'iter': 2}
    if where.startswith('write'):
        limit = {'write-0': 0, 'write-1k': 1024, 'write-half': 100_000}[where]
        monkeypatch.setattr(ckmod, 'open', full_disk(limit), raising=False)
    else: monkeypatch.setattr(os, 'fsync' if where == 'fsync' else 'replace', enospc)
    with pytest.raises(OSError) as e:
        save_checkpoint(p, big)
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert e.value.filename == str(p) and 'cannot write the checkpoint' in str(e.value)   # not torch's zip-writer error
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before
    assert load_checkpoint(p)['iter'] == 1
    assert [x.name for x in tmp_path.iterdir()] == ['c.pt']       # no temporary file left


def test_full_disk_in_trainer_checkpointer(tmp_path, monkeypatch):
    "The Trainer's Checkpointer hits a full disk at iteration 4: the run stops with the OSError, iteration 2's checkpoint is intact, and resuming from it ends where an unbroken run ends."
    torch.set_num_threads(1)
    log = {'val_freq': 0, 'save_freq': 2, 'keep_last': 5, 'tensorboard': False, 'progress': False}
    cfg = lambda name: from_dict(TrainConfig, tiny_config(tmp_path / name, train={'n_iter': 6}, log=log))
    build_trainer(cfg('ref')).fit()
    ck_dir = tmp_path / 'run' / 'checkpoints'
    monkeypatch.setattr(ckmod, 'open', full_disk(20_000, only='.iter_00000004.pt'), raising=False)
    with pytest.raises(OSError) as e:
        build_trainer(cfg('run')).fit()
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC and 'iter_00000004.pt' in str(e.value)
    assert [p.name for p in ck_dir.iterdir()] == ['iter_00000002.pt']   # no partial file, nothing pruned
    assert load_checkpoint(ck_dir / 'iter_00000002.pt')['iter'] == 2
    t = build_trainer(cfg('run'), resume='auto')
    assert t.state.iter == 2
    t.fit()
    a, b = (load_checkpoint(tmp_path / n / 'checkpoints' / 'iter_00000006.pt') for n in ('ref', 'run'))
    for key in ('model', 'ema'):
        for name, v in a[key].items(): assert torch.equal(v, b[key][name]), (key, name)


def test_stale_checkpoint_temporaries_are_swept(tmp_path):
    "A checkpoint write cut off by a kill leaves `.iter_N.pt.XXXXXXXX.tmp` behind; the next run in that folder removes it."
    log = {'val_freq': 0, 'save_freq': 2, 'tensorboard': False, 'progress': False}
    cfg = from_dict(TrainConfig, tiny_config(tmp_path / 'run', train={'n_iter': 2}, log=log))
    ck_dir = tmp_path / 'run' / 'checkpoints'
    ck_dir.mkdir(parents=True)
    (ck_dir / '.iter_00000004.pt.0badf00d.tmp').write_bytes(b'half a checkpoint')
    build_trainer(cfg, resume='auto').fit()
    assert [p.name for p in ck_dir.iterdir()] == ['iter_00000002.pt']


def test_resume_without_ema_starts_the_ema_from_the_loaded_weights(tmp_path):
    "Resuming from a checkpoint that has no EMA (an SR3 reference pair, a weights-only file) must not leave the EMA at the random initial weights: with decay ~0.999 it would stay mostly random for thousands of steps, and inference uses it."
    log = {'val_freq': 0, 'tensorboard': False, 'progress': False}
    cfg = from_dict(TrainConfig, tiny_config(tmp_path / 'run', train={'n_iter': 2}, log=log))
    init = build_trainer(cfg).net.state_dict()
    weights = {k: v + 1 if v.is_floating_point() else v for k, v in init.items()}
    save_checkpoint(tmp_path / 'weights.pt', {'model': weights, 'iter': 100})
    t = build_trainer(cfg, resume=str(tmp_path / 'weights.pt'))
    ema = next(cb for cb in t.cbs if cb.state_key == 'ema').ema.state_dict()
    for k, v in weights.items(): assert torch.equal(ema[k], v.float() if v.is_floating_point() else v), k


def test_isotropic_volume_inference_killed_three_times_equals_clean_run(tmp_path):
    "`sr3xct infer` on a volume (all three axes, realism, slabs of 2 LR slices) killed at 3 seeded random points, rerun each time: the same bytes as a clean run."
    from sr3xct.diffusion import GaussianDiffusion
    from sr3xct.models import SRModel
    from sr3xct.models import save_model
    from sr3xct.predictor import Predictor
    torch.manual_seed(0)
    p = Predictor(4, 8, 1).eval(); torch.nn.init.normal_(p.tail.weight, std=0.05)
    u = UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=16, use_cross_attn=False)
    save_model(SRModel(4, p, GaussianDiffusion(u, n_timestep=100, residual=True).eval(), start=0.5), tmp_path / 'm.safetensors')
    lr = np.random.default_rng(0).integers(0, 256, (8, 4, 4), dtype=np.uint8)   # 4 slabs of 2 LR slices, one write each
    write_volume(tmp_path / 'lr.tif', lr, VolumeMeta('uint8', 3, (4., 4., 4.), 'um'))
    args = lambda out: ['infer', '--checkpoint', tmp_path / 'm.safetensors', '--input', tmp_path / 'lr.tif', '--output', tmp_path / out,
                        '--no-progress', '--mode', 'realism', '--steps', '3', '--slab', '2', '--overlap', '4', '--precision', 'fp32', '--threads', '1']
    r = run(*args('clean.tif'))
    assert r.returncode == 0, r.stderr[-3000:]
    rng = random.Random(5)
    for phase in rng.sample(['computed', 'recorded', 'unrecorded', 'progress-rename'], 3):
        r = run(1, phase, *args('sr.tif'), driver=INFER_DRIVER)   # killed at the first write of this run: a slab at least stays to do
        assert r.returncode == KILLED, (phase, r.stderr[-3000:])
        assert not (tmp_path / 'sr.tif').exists() and (tmp_path / '.sr.tif.partial').exists()
    r = run(*args('sr.tif'))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / 'sr.tif').read_bytes() == (tmp_path / 'clean.tif').read_bytes()
    assert read_volume(tmp_path / 'sr.tif')[1].voxel_size == (1., 1., 1.)
    assert sorted(q.name for q in tmp_path.iterdir()) == ['clean.tif', 'lr.tif', 'm.safetensors', 'sr.tif']
