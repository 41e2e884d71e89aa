"Checkpoint files: round trips, atomic writes, the SR3 reference pair, and every kind of bad or hostile file."
import io
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

import sr3xct.checkpoint as ckmod
from sr3xct.checkpoint import load_checkpoint, save_checkpoint, read_tensors
from sr3xct.errors import InputError
from sr3xct.unet import UNet

TINY = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[8], res_blocks=1, image_size=16)


class Payload:
    "Unpickling this creates `marker` (a stand-in for `os.system(...)` in a malicious checkpoint)."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (io.open, (str(self.marker), 'w'))


@pytest.fixture
def trained():
    torch.manual_seed(0)
    net = UNet(**TINY)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    x, g = torch.randn(2, 2, 16, 16), torch.rand(2, 1)
    net(x, g).square().mean().backward()
    opt.step(); sched.step()
    return net, opt, sched, x, g


def test_round_trip_rebuilds_everything(tmp_path, trained):
    net, opt, sched, x, g = trained
    ema = {k: v.clone() * 0.5 for k, v in net.state_dict().items()}
    state = {'model': net.state_dict(), 'ema': ema, 'optimizer': opt.state_dict(), 'scheduler': sched.state_dict(),
             'iter': 7, 'epoch': 2, 'config': {'model': net.config, 'lr': 1e-4, 'names': ('a', 'b')},
             'rng': {'torch': torch.get_rng_state(), 'python': (3, (1, 2, 3), None)}, 'dtype': torch.bfloat16}
    out = save_checkpoint(tmp_path / 'c.pt', state)
    assert out == tmp_path / 'c.pt'
    ck = load_checkpoint(tmp_path / 'c.pt')
    assert ck['format'] == 'sr3xct-1' and ck['iter'] == 7 and ck['epoch'] == 2
    assert ck['files'] == [str(tmp_path / 'c.pt')]
    assert ck['config']['names'] == ('a', 'b') and ck['dtype'] is torch.bfloat16
    net2 = UNet(**ck['config']['model'])
    net2.load_state_dict(ck['model'], strict=True)
    opt2 = torch.optim.Adam(net2.parameters(), 1e-4)
    opt2.load_state_dict(ck['optimizer'])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 10)
    sched2.load_state_dict(ck['scheduler'])
    assert sched2.last_epoch == 1
    with torch.no_grad():
        assert torch.equal(net2(x, g), net(x, g))
    assert all(torch.equal(ck['ema'][k], ema[k]) for k in ema)
    assert torch.equal(ck['rng']['torch'], state['rng']['torch'])
    # saving a loaded dict again works (its 'files' and 'format' are replaced)
    save_checkpoint(tmp_path / 'd.pt', ck)
    assert load_checkpoint(tmp_path / 'd.pt')['files'] == [str(tmp_path / 'd.pt')]


def test_defaults_for_missing_keys(tmp_path):
    save_checkpoint(tmp_path / 'c.pt', {'model': {'w': torch.ones(2)}})
    ck = load_checkpoint(tmp_path / 'c.pt')
    assert {k: ck[k] for k in ('ema', 'optimizer', 'scheduler', 'iter', 'epoch', 'config')} == \
        dict(ema=None, optimizer=None, scheduler=None, iter=0, epoch=0, config=None)


def test_every_load_is_weights_only(tmp_path, monkeypatch):
    calls, real = [], torch.load
    def spy(*a, **k):
        calls.append(k); return real(*a, **k)
    monkeypatch.setattr(torch, 'load', spy)
    save_checkpoint(tmp_path / 'c.pt', {'model': {}})
    load_checkpoint(tmp_path / 'c.pt')
    assert calls and all(k.get('weights_only') is True and k.get('map_location') == 'cpu' for k in calls)


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / 'c.pt'
    save_checkpoint(p, {'model': {}, 'iter': 1})
    def crash(obj, f, *a, **k):
        f.write(b'half a checkpoint'); raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(OSError, match='disk full'):
        save_checkpoint(p, {'model': {}, 'iter': 2})
    monkeypatch.undo()
    assert load_checkpoint(p)['iter'] == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ['c.pt']


def test_atomic_write_uses_fsync_and_replace(tmp_path, monkeypatch):
    seen = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, 'fsync', lambda fd: (seen.append('fsync'), real_fsync(fd))[1])
    monkeypatch.setattr(os, 'replace', lambda a, b: (seen.append(('replace', Path(a).parent == Path(b).parent)),
                                                     real_replace(a, b))[1])
    save_checkpoint(tmp_path / 'c.pt', {'model': {}})
    assert seen[0] == 'fsync' and ('replace', True) in seen and seen.index(('replace', True)) > 0


@pytest.mark.parametrize('bad, where', [
    (torch.nn.Linear(2, 2), "state['x']"),
    (lambda: 0, "state['x']"),
    ({'a': [1, object()]}, "state['x']['a'][1]"),
    ({1.5j: 1}, 'key'),
])
def test_save_refuses_objects(tmp_path, bad, where):
    with pytest.raises(InputError) as e:
        save_checkpoint(tmp_path / 'c.pt', {'model': {}, 'x': bad})
    assert str(e.value).startswith(str(tmp_path / 'c.pt')) and where in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_save_needs_model_and_folder(tmp_path):
    with pytest.raises(InputError, match="'model' state dict"):
        save_checkpoint(tmp_path / 'c.pt', {'iter': 1})
    with pytest.raises(InputError, match='does not exist'):
        save_checkpoint(tmp_path / 'no' / 'c.pt', {'model': {}})


@pytest.mark.parametrize('how', ['torch.save', 'pickle', 'nested'])
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    marker, p = tmp_path / 'pwned', tmp_path / 'evil.pt'
    if how == 'torch.save': torch.save(Payload(marker), p)
    elif how == 'pickle': p.write_bytes(pickle.dumps({'model': {}, 'format': 'sr3xct-1', 'x': Payload(marker)}))
    else: torch.save({'format': 'sr3xct-1', 'model': {'w': torch.ones(1)}, 'rng': [Payload(marker)]}, p)
    with pytest.raises(InputError, match='evil.pt: refused'):
        load_checkpoint(p)
    assert not marker.exists()
    # the payload is real: an unsafe load would have run it
    if how == 'torch.save':
        torch.load(p, weights_only=False)
        assert marker.exists()


def test_malicious_reference_pair_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    torch.save({'denoise_fn.w': torch.ones(1)}, tmp_path / 'I5_E1_gen.pth')
    torch.save({'iter': 5, 'epoch': 1, 'optimizer': Payload(marker)}, tmp_path / 'I5_E1_opt.pth')
    with pytest.raises(InputError, match='I5_E1_opt.pth: refused'):
        load_checkpoint(tmp_path / 'I5_E1_gen.pth')
    assert not marker.exists()


def _corrupt(tmp_path):
    good = tmp_path / 'good.pt'
    save_checkpoint(good, {'model': {'w': torch.randn(1000)}})
    data = good.read_bytes()
    return {
        'empty.pt': b'',
        'truncated.pt': data[:len(data) // 2],
        'flipped.pt': data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:],
        'text.pt': b'this is not a checkpoint\n',
        'random.pt': os.urandom(4096),
        'json.pt': b'{"model": {}}',
    }


def test_corrupt_files_name_the_file(tmp_path):
    for name, data in _corrupt(tmp_path).items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as e:
            load_checkpoint(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name) + ': '), (name, str(e.value))


def test_wrong_content(tmp_path):
    cases = {
        'list.pt': ([1, 2], 'holds a list, not a dict'),
        'plain.pt': ({'downs.0.weight': torch.ones(1)}, "no 'format' tag"),
        'future.pt': ({'format': 'sr3xct-9', 'model': {}}, "format 'sr3xct-9' is not supported"),
        'nomodel.pt': ({'format': 'sr3xct-1'}, "without a 'model' state dict"),
        'optonly.pt': ({'iter': 1, 'epoch': 1, 'optimizer': {}, 'scheduler': None}, 'holds only optimizer state'),
    }
    for name, (obj, msg) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(InputError, match=msg) as e:
            load_checkpoint(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name))
    with pytest.raises(InputError, match='no such file'):
        load_checkpoint(tmp_path / 'missing.pt')
    with pytest.raises(InputError, match='is a folder'):
        load_checkpoint(tmp_path)


def test_reference_pair_variants(tmp_path):
    sd = {'denoise_fn.a': torch.ones(2), 'betas': torch.zeros(3), 'alphas_cumprod': torch.zeros(3)}
    torch.save(sd, tmp_path / 'I9_E2_gen.pth')
    ck = load_checkpoint(tmp_path / 'I9_E2_gen.pth')                # weights without _opt.pth: as the reference
    assert ck['format'] == 'sr3-reference' and list(ck['model']) == ['a'] and (ck['iter'], ck['epoch']) == (0, 0)
    assert ck['optimizer'] is None and ck['files'] == [str(tmp_path / 'I9_E2_gen.pth')]
    with pytest.raises(InputError, match='I8_E1_gen.pth: no such file'):  # the _opt names a missing _gen
        torch.save({'iter': 8, 'epoch': 1, 'optimizer': {}}, tmp_path / 'I8_E1_opt.pth')
        load_checkpoint(tmp_path / 'I8_E1_opt.pth')
    torch.save({'epoch': 2}, tmp_path / 'I9_E2_opt.pth')
    with pytest.raises(InputError, match="I9_E2_opt.pth: not an SR3 reference optimizer"):
        load_checkpoint(tmp_path / 'I9_E2')
    torch.save({'betas': torch.zeros(3)}, tmp_path / 'I7_E1_gen.pth')
    with pytest.raises(InputError, match="I7_E1_gen.pth: not an SR3 reference generator checkpoint: no 'denoise_fn.'"):
        load_checkpoint(tmp_path / 'I7_E1_gen.pth')
    # a renamed generator file is still recognised
    torch.save(sd, tmp_path / 'weights.pth')
    assert list(load_checkpoint(tmp_path / 'weights.pth')['model']) == ['a']


def test_sr3_reference_pair_reproduces_golden_output(shared):
    fix = shared / 'fixtures'
    golden = read_tensors(fix / 'sr3_reference_unet_small.pt')
    d = fix / 'sr3_reference_checkpoint'
    cks = [load_checkpoint(p) for p in (d / 'I1000_E3_gen.pth', d / 'I1000_E3_opt.pth', d / 'I1000_E3', str(d / 'I1000_E3'))]
    for ck in cks:
        assert (ck['format'], ck['iter'], ck['epoch'], ck['scheduler'], ck['ema'], ck['config']) == \
            ('sr3-reference', 1000, 3, None, None, None)
        assert set(ck['model']) == set(golden['state_dict'])
    ck = cks[0]
    net = UNet(**golden['config'], use_cross_attn=False).eval()
    net.load_state_dict(ck['model'], strict=True)
    with torch.no_grad():
        y = net(golden['x'], golden['noise_level'])
    assert ((y - golden['y']).norm() / golden['y'].norm()).item() < 1e-5
    # the optimizer state indexes our parameters in the reference's order
    adam = torch.optim.Adam(net.parameters(), 1e-4)
    adam.load_state_dict(ck['optimizer'])
    for i, p in enumerate(net.parameters()):
        assert adam.state[p]['exp_avg'].shape == p.shape, i
    # the reference weights in a cross-attention UNet: only the new modules are missing, output unchanged
    cross = UNet(**golden['config']).eval()
    res = cross.load_state_dict(ck['model'], strict=False)
    assert res.unexpected_keys == [] and all('cross_attn' in k or k.startswith('cond_encoder.') for k in res.missing_keys)
    with torch.no_grad():
        assert ((cross(golden['x'], golden['noise_level']) - golden['y']).norm() / golden['y'].norm()).item() < 1e-5


def test_reference_to_sr3xct_format(shared, tmp_path):
    ck = load_checkpoint(shared / 'fixtures' / 'sr3_reference_checkpoint' / 'I1000_E3')
    save_checkpoint(tmp_path / 'ours.pt', ck)
    back = load_checkpoint(tmp_path / 'ours.pt')
    assert back['format'] == 'sr3xct-1' and back['iter'] == 1000
    assert all(torch.equal(back['model'][k], v) for k, v in ck['model'].items())
