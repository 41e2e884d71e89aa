"Nothing of the user's is lost: existing outputs are refused without --overwrite, a run folder holds one run at a time."
import contextlib, io, os
from pathlib import Path
import pytest
import torch
from sr3xct.cli import main
from sr3xct.config import load_config, build_trainer, lock_run
from sr3xct.errors import InputError
from sr3xct.unet import UNet
from sr3xct.checkpoint import save_checkpoint

TINY = ['model.inner_channel=8', 'model.norm_groups=4', 'model.channel_mults=[1,2]', 'model.attn_res=[8]', 'model.image_size=16',
        'data.patch=16', 'data.synthetic_shape=[8,32,32]', 'data.axes=[0]', 'data.length=8', 'data.batch_size=2', 'train.n_iter=2',
        'log.val_freq=0', 'log.save_freq=2', 'log.tensorboard=false', 'log.progress=false', 'train.threads=1']


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def snapshot(folder:Path) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_average_refuses_to_replace_a_file(tmp_path):
    net = UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], image_size=16)
    for k in (1, 2): save_checkpoint(tmp_path / f'iter_{k:08d}.pt', {'model': net.state_dict()})
    (tmp_path / 'mine.pt').write_bytes(b'precious')
    rc, _, err = run('average', tmp_path / 'iter_00000001.pt', tmp_path / 'iter_00000002.pt', '-o', tmp_path / 'mine.pt')
    assert rc == 2 and 'mine.pt: exists; pass --overwrite' in err and err.count('\n') == 1
    assert (tmp_path / 'mine.pt').read_bytes() == b'precious'
    assert run('average', tmp_path / 'iter_00000001.pt', tmp_path / 'iter_00000002.pt', '-o', tmp_path / 'mine.pt', '--overwrite')[0] == 0


def test_train_into_a_finished_run_needs_resume(tmp_path):
    cfg = load_config('train/16_64/small', TINY + [f'out_dir={tmp_path}/run'])
    build_trainer(cfg).fit()
    before = snapshot(tmp_path / 'run')
    args = ['train', '-c', 'train/16_64/small', *[x for s in TINY for x in ('--set', s)], '--set', f'out_dir={tmp_path}/run']
    rc, _, err = run(*args)
    assert rc == 2 and 'already holds a run' in err and '--resume auto' in err and err.count('\n') == 1
    assert snapshot(tmp_path / 'run') == before   # nothing of the first run was touched
    rc, _, err = run(*args, '--resume', 'auto', '--set', 'train.n_iter=4')
    assert rc == 0, err


def test_one_run_per_folder_at_a_time(tmp_path):
    held = lock_run(tmp_path / 'run')
    try:
        with pytest.raises(InputError, match='another sr3xct train is running'):
            build_trainer(load_config('train/16_64/small', TINY + [f'out_dir={tmp_path}/run']))
    finally: held.close()
    t = build_trainer(load_config('train/16_64/small', TINY + [f'out_dir={tmp_path}/run']))   # free again
    with pytest.raises(InputError, match='another sr3xct train'): lock_run(tmp_path / 'run')
    del t


@pytest.mark.parametrize('bad, message', [
    ('train.lr=-0.001', 'train.lr must be > 0'), ('train.betas=[0.9, 1.0]', 'train.betas must be two numbers in [0, 1)'),
    ('train.n_iter=0', 'train.n_iter must be >= 1'), ('data.batch_size=0', 'data.batch_size must be >= 1'),
    ('data.scale=3', 'data.scale must be 2, 4 or 8'), ('log.print_freq=0', 'log.print_freq must be >= 1'),
    ('train.device=tpu', 'train.device must be'), ('out_dir=runs/{run}', 'out_dir must be a path whose only field is {name}')])
def test_out_of_range_config_values_fail_before_anything_is_created(tmp_path, bad, message):
    rc, _, err = run('train', '-c', 'train/16_64/small', '--set', f'name=x', '--set', f'out_dir={tmp_path}/run' if 'out_dir' not in bad else bad,
                     '--set', bad)
    assert rc == 2 and message in err and err.count('\n') == 1 and 'Traceback' not in err, err
    assert not (tmp_path / 'run').exists() and not Path('runs/x').exists()
