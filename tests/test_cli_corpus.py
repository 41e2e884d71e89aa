"""Malformed inputs through the `sr3xct` command line (a real process each): exit status 2, one line on stderr naming
the file and the problem, no traceback, nothing written, every input left as it was; and hostile checkpoints refused
without running their payload."""
import hashlib, io, os, struct, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
from PIL import Image

from sr3xct.checkpoint import save_checkpoint
from sr3xct.io import VolumeMeta, write_volume
from sr3xct.unet import UNet
from test_train import tiny_config

TINY = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32, use_cross_attn=False)
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def cli(*args, cwd, exe=(sys.executable, '-m', 'sr3xct.cli')):
    return subprocess.run([*exe, *map(str, args)], capture_output=True, text=True, timeout=300, env=ENV, cwd=cwd)


def snapshot(root: Path) -> dict:
    "Every file and folder under `root`: (size, mtime_ns, sha256) of files, None for folders."
    return {str(p.relative_to(root)): None if p.is_dir() else
            (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob('*'))}


def tif(path: Path, a: np.ndarray, **kw) -> Path:
    "A plain (non-ImageJ) TIFF, so that any dtype and layout can be written."
    tifffile.imwrite(path, a, **({'photometric': 'minisblack'} | kw))
    return path


def rand_u8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def ckpt(path: Path, model=TINY, config=True, seed=0) -> Path:
    torch.manual_seed(seed)
    net = UNet(**model)
    cfg = {'model': dict(TINY), 'data': {'scale': 4}, 'diffusion': {'n_timestep': 100}} if config else None
    return save_checkpoint(path, {'model': net.state_dict(), 'config': cfg})


@pytest.fixture
def work(tmp_path):
    "Good inputs every case starts from: a tiny x4 checkpoint and inference config, LR/HR/SR volumes, a training config."
    ckpt(tmp_path / 'm.pt')
    (tmp_path / 'x4.yaml').write_text(yaml.safe_dump({'scale': 4, 'device': 'cpu', 'sampling': {'steps': 2, 'tile': 32, 'overlap': 8,
                                                      'precision': 'fp32'}}))
    write_volume(tmp_path / 'lr.tif', rand_u8((3, 12, 12)), VolumeMeta('uint8', 3, (4., 4., 4.), 'um'))
    hr = rand_u8((3, 48, 48), 1)
    write_volume(tmp_path / 'hr.tif', hr, VolumeMeta('uint8', 3)); write_volume(tmp_path / 'sr.tif', hr, VolumeMeta('uint8', 3))
    train_yaml(tmp_path)
    return tmp_path


def train_yaml(t: Path, name='train.yaml', **sections) -> Path:
    cfg = tiny_config(t / 'run', **sections)
    cfg['train']['n_iter'] = 2; cfg['log']['progress'] = False
    (t / name).write_text(yaml.safe_dump(cfg))
    return t / name


# ------------------------------------------------------------------ the corpus: each case makes its bad input in `t`
# and returns (argv, the file the message must name, the problem it must state)

def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def half(path: Path) -> bytes: return path.read_bytes()[:path.stat().st_size // 2]


def infer(t, inp, *extra, ck='m.pt', cfg='x4.yaml'):
    return ['infer', '-c', t / cfg, '--checkpoint', t / ck, '--input', t / inp, '--output', t / 'out.tif', '--no-progress', '--in-plane', *extra]


def absurd_header(t):
    "A valid 12x12 TIFF whose ImageWidth/ImageLength tags are patched to 2**30: the header announces an exabyte image."
    p = tif(t / 'absurd.tif', rand_u8((12, 12)))
    raw = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tf:
        for tag in ('ImageWidth', 'ImageLength'):
            tg = tf.pages[0].tags[tag]
            fmt = {3: '<H', 4: '<I'}[tg.dtype]
            raw[tg.valueoffset:tg.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, 65535 if tg.dtype == 3 else 2**30)
    p.write_bytes(bytes(raw))
    return infer(t, 'absurd.tif'), p, 'truncated: pixels need'


def nan_inf(t):
    a = np.random.default_rng(0).random((3, 12, 12)).astype(np.float32)
    a[1, 2, 3], a[2, 0, 0] = np.nan, np.inf
    return infer(t, 'naninf.tif'), tif(t / 'naninf.tif', a), '1 NaN and 0 Inf values in slice 1 along axis 0 (first at index (2, 3))'


def folder_slices_differ(t):
    (t / 'slices').mkdir()
    tif(t / 'slices' / 's0.tif', rand_u8((12, 12))); bad = tif(t / 'slices' / 's1.tif', rand_u8((12, 16)))
    return infer(t, 'slices'), bad, 'slice shape (12, 16) differs'


def other_architecture(t):
    "Weights of a wider UNet under a config that records the tiny one."
    return infer(t, 'lr.tif', ck='wide.pt'), ckpt(t / 'wide.pt', {**TINY, 'inner_channel': 16}), 'weights do not fit the model'


def corrupt_checkpoint(t, cmd='infer'):
    bad = put(t / 'corrupt.pt', half(t / 'm.pt'))
    argv = infer(t, 'lr.tif', ck='corrupt.pt') if cmd == 'infer' else ['average', t / 'm.pt', bad, '-o', t / 'avg.pt']
    return argv, bad, 'not a readable PyTorch checkpoint'


def infer_config(t, d, name):
    (t / name).write_text(yaml.safe_dump({'scale': 4, 'device': 'cpu', 'sampling': {'tile': 32, 'overlap': 8, **d}}))
    return infer(t, 'lr.tif', cfg=name), t / name


def train_config(t, edit, problem):
    "The good training config with one text edit."
    bad = put(t / 'bad.yaml', (t / 'train.yaml').read_text().replace(*edit, 1).encode())
    assert bad.read_text() != (t / 'train.yaml').read_text()
    return ['train', '-c', bad], bad, problem


def eval_(t, sr='sr.tif', hr='hr.tif', *extra):
    return ['eval', '--sr', t / sr, '--hr', t / hr, '--out', t / 'report', *extra]


def train_volume(t, a, name, **kw):
    p = tif(t / name, a)
    return ['train', '-c', train_yaml(t, 'vol.yaml', data={'source': 'volumes', 'paths': [str(p)], **kw})], p


def paired_folder(t, lr_size=4, sr_names='ab'):
    "The SR3 layout hr_16/, lr_4/, sr_4_16/ with 8-bit PNGs; LR images of `lr_size`, SR images named `sr_names`."
    root = t / 'pairs'
    for sub, n, names in (('hr_16', 16, 'ab'), ('lr_4', lr_size, 'ab'), ('sr_4_16', 16, sr_names)):
        (root / sub).mkdir(parents=True)
        for k in names: Image.fromarray(rand_u8((n, n))).save(root / sub / f'{k}.png')
    return ['train', '-c', train_yaml(t, 'pairs.yaml', data={'source': 'folder', 'paths': [str(root)]})]


def other_architecture_pair(t):
    "Two checkpoints of different widths to average."
    wide = ckpt(t / 'wide.pt', {**TINY, 'inner_channel': 16})
    return ['average', t / 'm.pt', wide, '-o', t / 'avg.pt'], wide, 'same network'


CASES = {
    # infer: the LR input
    'infer-not-a-tiff': lambda t: (infer(t, 'text.tif'), put(t / 'text.tif', b'x,y\n1,2\n'), 'not a TIFF file'),
    'infer-zero-bytes': lambda t: (infer(t, 'empty.tif'), put(t / 'empty.tif', b''), 'empty file (0 bytes)'),
    'infer-truncated': lambda t: (infer(t, 'cut.tif'), put(t / 'cut.tif', half(t / 'lr.tif')), 'truncated'),
    'infer-rgb': lambda t: (infer(t, 'rgb.tif'), tif(t / 'rgb.tif', rand_u8((12, 12, 3)), photometric='rgb'),
                            'RGB/multi-sample image'),
    'infer-4d': lambda t: (infer(t, '4d.tif'), tif(t / '4d.tif', rand_u8((2, 3, 12, 12))), '4D data'),
    'infer-nan-inf-float': nan_inf,
    'infer-constant-float': lambda t: (infer(t, 'flat.tif'), tif(t / 'flat.tif', np.full((3, 12, 12), 0.5, np.float32)),
                                       'span no grey levels'),
    'infer-absurd-header-size': absurd_header,
    'infer-unsupported-dtype-float64': lambda t: (infer(t, 'f64.tif'), tif(t / 'f64.tif', np.zeros((3, 12, 12))),
                                                  'unsupported dtype float64'),
    'infer-wrong-dimensions-2d-axis': lambda t: (infer(t, 'img.tif', '--axis', '2'), tif(t / 'img.tif', rand_u8((12, 12))),
                                                 'a 2D image has only axis 0'),
    'infer-folder-slices-differ': folder_slices_differ,
    'infer-missing-input': lambda t: (infer(t, 'nowhere.tif'), t / 'nowhere.tif', 'no such file'),
    # infer: checkpoint and config
    'infer-corrupt-checkpoint': corrupt_checkpoint,
    'infer-checkpoint-other-architecture': other_architecture,
    'infer-yaml-unknown-key': lambda t: (*infer_config(t, {'steps': 2, 'sampels': 3}, 'typo.yaml'), "unknown key 'sampling.sampels'"),
    'infer-yaml-wrong-type': lambda t: (*infer_config(t, {'steps': 'two'}, 'type.yaml'), "key 'sampling.steps' must be int, got str"),
    # eval
    'eval-lr-hr-mismatch': lambda t: (eval_(t, 'sr.tif', 'hr.tif', '--lr', t / 'lr10.tif'),
                                      tif(t / 'lr10.tif', rand_u8((3, 10, 10))), 'is not the HR volume'),
    'eval-sr-wrong-dimensions': lambda t: (eval_(t, 'sr2d.tif'), tif(t / 'sr2d.tif', rand_u8((48, 48))),
                                           'does not match the HR volume'),
    'eval-constant-hr': lambda t: (eval_(t, 'flat.tif', 'flat.tif'), tif(t / 'flat.tif', np.full((3, 48, 48), 7, np.uint8)),
                                   'constant image'),
    # train: the config
    'train-yaml-unknown-key': lambda t: train_config(t, ('  lr:', '  learning_rate:'), "unknown key 'train.learning_rate'"),
    'train-yaml-wrong-type': lambda t: train_config(t, ('  lr: 0.001', '  lr: fast'), "key 'train.lr' must be float, got str"),
    'train-yaml-invalid': lambda t: train_config(t, ('model:', 'model: [1, 2\n  x: :\nm:'), 'not valid YAML (line'),
    # train: the data
    'train-volume-smaller-than-tile': lambda t: (*train_volume(t, rand_u8((4, 8, 8)), 'small.tif'),
                                                 'slice 8x8 is smaller than the requested patch 16x16'),
    'train-volume-constant-float': lambda t: (*train_volume(t, np.full((4, 32, 32), 0.25, np.float32), 'flat.tif'),
                                              'span no grey levels'),
    'train-volume-unsupported-dtype-bool': lambda t: (*train_volume(t, np.zeros((4, 32, 32), bool), 'mask.tif'),
                                                      'binary (bool) image'),
    'train-folder-lr-hr-names-differ': lambda t: (paired_folder(t, sr_names='ac'), t / 'pairs' / 'sr_4_16',
                                                  'file names differ'),
    'train-folder-lr-wrong-size': lambda t: (paired_folder(t, lr_size=5), t / 'pairs' / 'lr_4' / 'a.png',
                                             'image is 5x5, expected 4x4'),
    'train-resume-corrupt-checkpoint': lambda t: (['train', '-c', t / 'train.yaml', '--resume', corrupt_checkpoint(t)[1]], t / 'corrupt.pt',
                   'not a readable PyTorch checkpoint'),
    'train-resume-other-architecture': lambda t: (['train', '-c', t / 'train.yaml', '--resume', t / 'other.pt'], ckpt(t / 'other.pt'),
                   'does not fit the configured model'),
    'train-val-volume-not-a-tiff': lambda t: (['train', '-c', train_yaml(t, 'val.yaml', data={'source': 'volumes', 'paths': [str(t / 'hr.tif')],
                                                                    'val_paths': [str(t / 'val.tif')]})],
                   put(t / 'val.tif', b'no'), 'not a TIFF file'),
    # average
    'average-corrupt-checkpoint': lambda t: corrupt_checkpoint(t, 'average'),
    'average-other-architecture': other_architecture_pair,
}


@pytest.mark.parametrize('make', CASES.values(), ids=CASES.keys())
def test_malformed_input(work, make):
    argv, culprit, problem = make(work)
    before = snapshot(work)
    r = cli(*argv, cwd=work)
    assert r.returncode == 2, r.stderr[-3000:]
    assert 'Traceback' not in r.stderr and r.stderr.count('\n') == 1, r.stderr[-3000:]
    line = r.stderr.strip()
    assert line.startswith(f'sr3xct {argv[0]}: error: {culprit}') and problem in line, line
    assert r.stdout == ''
    # nothing written (no output, no partial or hidden file, no run folder) and every input as it was
    assert snapshot(work) == before


def test_corpus_is_large_enough():
    "The issue asks for at least 20 malformed inputs."
    assert len(CASES) >= 20


# ------------------------------------------------------------------ hostile checkpoints through the command line

class Payload:
    "Unpickling this creates `marker` (a stand-in for `os.system(...)` in a malicious checkpoint)."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (io.open, (str(self.marker), 'w'))


@pytest.mark.parametrize('command', ['infer', 'train-resume', 'average'])
def test_evil_checkpoint_is_refused_without_running(work, command):
    marker, evil = work / 'pwned', work / 'evil.pt'
    net = UNet(**TINY)
    torch.save({'format': 'sr3xct-1', 'model': net.state_dict(), 'config': {'model': TINY, 'data': {'scale': 4}},
                'extra': [Payload(marker)]}, evil)
    argv = {'infer': infer(work, 'lr.tif', ck='evil.pt'),
            'train-resume': ['train', '-c', work / 'train.yaml', '--resume', evil],
            'average': ['average', work / 'm.pt', evil, '-o', work / 'avg.pt']}[command]
    exe = [str(Path(sys.executable).with_name('sr3xct'))] if command == 'infer' else [sys.executable, '-m', 'sr3xct.cli']
    r = cli(*argv, cwd=work, exe=exe)   # `sr3xct infer` through the console script, the others through `python -m`
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.count('\n') == 1 and f'{evil}: refused' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not marker.exists()
    assert not (work / 'out.tif').exists() and not (work / 'avg.pt').exists()
    assert not list((work / 'run').glob('checkpoints/*.pt'))
    torch.load(evil, weights_only=False)    # the payload is real: an unsafe load runs it
    assert marker.exists()
