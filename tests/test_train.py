"`sr3xct train` end to end on a tiny config: config errors, exact resume after SIGKILL, partial files, averaging."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch
import yaml

from sr3xct.checkpoint import load_checkpoint

PY = sys.executable


def tiny_config(run_dir: Path, **sections) -> dict:
    "A config small enough for a few seconds of CPU training (dropout on: the global RNG matters for resume)."
    cfg = {
        'name': 'tiny', 'seed': 3, 'out_dir': str(run_dir),
        'model': {'inner_channel': 8, 'norm_groups': 4, 'channel_mults': [1, 2], 'attn_res': [8], 'res_blocks': 1,
                  'dropout': 0.1, 'image_size': 16, 'use_cross_attn': True},
        'diffusion': {'n_timestep': 100, 'importance_sampling': True},
        'loss': {'w_ssim': 0.05, 'w_perceptual': 0.0, 'w_multiscale': 0.01, 'w_frequency': 0.01},
        'data': {'source': 'synthetic', 'synthetic_shape': [8, 32, 32], 'patch': 16, 'scale': 4, 'axes': [0],
                 'length': 24, 'batch_size': 2, 'augment': {}},
        'train': {'n_iter': 40, 'lr': 1e-3, 'warmup': 4, 'ema_decay': 0.99, 'threads': 1},
        'log': {'print_freq': 5, 'val_freq': 20, 'save_freq': 5, 'keep_last': 3, 'tensorboard': True, 'progress': False},
        'val': {'n_images': 2, 'steps': 3},
    }
    for k, v in sections.items(): cfg[k].update(v)
    return cfg


def write(tmp: Path, cfg: dict, name='tiny.yaml') -> Path:
    p = tmp / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def sr3xct(*args, timeout=120, **kw):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([PY, '-m', 'sr3xct.cli', *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def test_bad_config_is_one_line_exit_2(tmp_path):
    cfg = tiny_config(tmp_path / 'run')
    cfg['train']['learning_rate'] = 1e-3
    r = sr3xct('train', '-c', write(tmp_path, cfg))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr
    assert "tiny.yaml: unknown key 'train.learning_rate'" in r.stderr
    for args, msg in [(['-c', tmp_path / 'missing.yaml'], 'missing.yaml: no such config file'),
                      (['-c', 'train/16_64/small', '--set', 'train.n_iter=many'], "key 'train.n_iter' must be int"),
                      (['-c', 'train/32_256/deep', '--set', f'out_dir={tmp_path}/d'], 'loss.vgg_weights is not set')]:
        r = sr3xct('train', *args)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count('\n') == 1, r.stderr


def _params(ck):
    return {k: v for k, v in ck['model'].items()}


def test_sigkill_resume_is_exact(tmp_path):
    "Kill a run with SIGKILL mid-way, leave a partly written newer file, resume: same weights as an unbroken run."
    ref = tiny_config(tmp_path / 'ref')
    r = sr3xct('train', '-c', write(tmp_path, ref, 'ref.yaml'))
    assert r.returncode == 0, r.stderr
    run = tmp_path / 'run'
    cfg = write(tmp_path, tiny_config(run), 'run.yaml')
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen([PY, '-m', 'sr3xct.cli', 'train', '-c', str(cfg)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    t0 = time.time()
    while not (run / 'checkpoints' / 'iter_00000015.pt').exists():
        assert p.poll() is None, p.stderr.read().decode()
        assert time.time() - t0 < 60
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    ckpts = sorted((run / 'checkpoints').glob('iter_*.pt'))
    last = ckpts[-1]
    assert int(last.stem.split('_')[1]) < 40
    # a partly written, newer checkpoint (as if a copy had been cut off)
    partial = run / 'checkpoints' / f'iter_{int(last.stem.split("_")[1]) + 5:08d}.pt'
    partial.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    r = sr3xct('train', '-c', cfg, '--resume', 'auto')
    assert r.returncode == 0, r.stderr
    assert f'resumed from {last}' in r.stderr and 'skipped' in r.stderr
    a, b = load_checkpoint(tmp_path / 'ref' / 'checkpoints' / 'iter_00000040.pt'), load_checkpoint(run / 'checkpoints' / 'iter_00000040.pt')
    for key in ('model', 'ema'):
        for k, v in a[key].items(): assert torch.equal(v, b[key][k]), (key, k)
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert all(torch.equal(sa[i]['exp_avg'], sb[i]['exp_avg']) for i in sa)
    assert a['scheduler'] == b['scheduler']
    assert len(list((run / 'checkpoints').glob('iter_*.pt'))) == 3  # keep_last
    # logs: every loss part, LR, grad norm, throughput; validation metrics and the grid
    recs = [json.loads(l) for l in (run / 'log.jsonl').read_text().splitlines()]
    train_recs = [r for r in recs if 'lr' in r]
    assert {'loss/l1', 'loss/ssim', 'loss/multiscale', 'loss/frequency', 'loss/total', 'lr', 'grad_norm', 'img_per_s'} <= set(train_recs[-1])
    assert any('val/psnr' in r for r in recs) and (run / 'val' / 'iter_00000040.png').is_file()
    assert list((run / 'tb').glob('events.out.tfevents.*'))


def test_average_command(tmp_path):
    run = tmp_path / 'run'
    cfg = tiny_config(run, train={'n_iter': 10}, log={'val_freq': 0, 'keep_last': 2, 'tensorboard': False})
    assert sr3xct('train', '-c', write(tmp_path, cfg)).returncode == 0
    r = sr3xct('average', '--dir', run, '--last', '2', '-o', tmp_path / 'avg.pt')
    assert r.returncode == 0, r.stderr
    c5, c10, avg = (load_checkpoint(p) for p in (run / 'checkpoints' / 'iter_00000005.pt', run / 'checkpoints' / 'iter_00000010.pt', tmp_path / 'avg.pt'))
    for k, v in avg['model'].items():
        if v.is_floating_point(): torch.testing.assert_close(v, (c5['model'][k] + c10['model'][k]) / 2)
    r = sr3xct('average', '--dir', tmp_path / 'nope', '-o', tmp_path / 'x.pt')
    assert r.returncode == 2 and 'nope: not a folder' in r.stderr


def test_nan_stops_with_message(tmp_path):
    "A learning rate that blows up: steps are skipped, the run stops with a clear message, no NaN checkpoint."
    run = tmp_path / 'run'
    cfg = tiny_config(run, train={'n_iter': 200, 'lr': 1e30, 'warmup': 0, 'nan_patience': 3, 'grad_clip': None},
                      log={'val_freq': 0, 'save_freq': 1, 'tensorboard': False})
    r = sr3xct('train', '-c', write(tmp_path, cfg))
    assert r.returncode == 1, r.stderr
    assert '3 steps in a row had a non-finite loss or gradient' in r.stderr and 'Traceback' not in r.stderr
    for p in (run / 'checkpoints').glob('iter_*.pt'):
        ck = load_checkpoint(p)
        assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())


def test_resume_sr3_reference_pair(tmp_path, shared):
    "The SR3 reference's I1000_E3 pair: weights, iteration and Adam state come back; the LR schedule is rebuilt at 1000."
    run = tmp_path / 'run'
    cfg = tiny_config(run, model={'inner_channel': 16, 'norm_groups': 8, 'channel_mults': [1, 2, 4], 'attn_res': [8],
                                  'res_blocks': 1, 'dropout': 0.0, 'image_size': 32, 'use_cross_attn': False},
                      data={'patch': 32, 'synthetic_shape': [8, 64, 64]},
                      diffusion={'n_timestep': 2000, 'importance_sampling': False},
                      train={'n_iter': 1004, 'warmup': 0, 'lr': 1e-4},
                      log={'val_freq': 0, 'save_freq': 1000, 'print_freq': 1, 'tensorboard': False})
    r = sr3xct('train', '-c', write(tmp_path, cfg), '--resume', shared / 'fixtures' / 'sr3_reference_checkpoint' / 'I1000_E3')
    assert r.returncode == 0, r.stderr
    assert 'at iteration 1000' in r.stderr
    recs = [json.loads(l) for l in (run / 'log.jsonl').read_text().splitlines()]
    assert [r['iter'] for r in recs] == [1001, 1002, 1003, 1004]
    import math
    lr = lambda i: 1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi * i / 1004)) / 2
    assert abs(recs[0]['lr'] - lr(1001)) < 1e-12
    ck = load_checkpoint(run / 'checkpoints' / 'iter_00001004.pt')
    assert ck['iter'] == 1004 and ck['scheduler']['last_epoch'] == 1004
