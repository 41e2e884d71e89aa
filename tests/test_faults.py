"Nothing of the user's is lost: existing outputs are refused without --overwrite, a run folder holds one run at a time."
import os
from pathlib import Path
import pytest
import torch
from sr3xct.config import load_config, build_trainer, lock_run
from sr3xct.errors import InputError
from sr3xct.unet import UNet
from sr3xct.checkpoint import save_checkpoint

TINY = ['model.inner_channel=8', 'model.norm_groups=4', 'model.channel_mults=[1,2]', 'model.attn_res=[8]', 'model.image_size=16',
        'data.patch=16', 'data.synthetic_shape=[8,32,32]', 'data.axes=[0]', 'data.length=8', 'data.batch_size=2', 'train.n_iter=2',
        'log.val_freq=0', 'log.save_freq=2', 'log.tensorboard=false', 'log.progress=false', 'train.threads=1']


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


# ------------------------------------------------------------------ issue 15, the remaining classes: values checked
# before anything is created, full and read-only disks, malformed metadata and odd files, odd but valid TIFF layouts

import errno, json, time, warnings
import numpy as np
import tifffile
import yaml
from unittest import mock
from sr3xct.io import VolumeMeta, write_volume, read_volume
from cli_helpers import run

UNET = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[], res_blocks=1, image_size=32, use_cross_attn=False)


def one_line(rc, err, *needles):
    assert rc == 2 and err.count('\n') == 1 and 'Traceback' not in err, err
    for n in needles: assert n in err, err


def checkpoint(path, config=None, edit=None, **entries):
    "A tiny x4 checkpoint; `config` replaces its config, `edit(state_dict)` changes its weights, `entries` are added."
    torch.manual_seed(0)
    sd = UNet(**UNET).state_dict()
    if edit: edit(sd)
    cfg = {'model': dict(UNET), 'data': {'scale': 4}, 'diffusion': {'n_timestep': 100}} if config is None else config
    return save_checkpoint(path, {'model': sd, 'config': cfg, **entries})


@pytest.fixture
def job(tmp_path):
    "An infer job: a tiny checkpoint, a fast inference config and a 3-slice LR volume."
    checkpoint(tmp_path / 'm.pt')
    (tmp_path / 'x4.yaml').write_text(yaml.safe_dump({'scale': 4, 'device': 'cpu', 'sampling': {'steps': 2, 'tile': 32, 'overlap': 8, 'precision': 'fp32'}}))
    write_volume(tmp_path / 'lr.tif', np.random.default_rng(0).integers(0, 256, (3, 12, 12), dtype=np.uint8), VolumeMeta('uint8'))
    return tmp_path


def infer(t, *extra, inp='lr.tif', ck='m.pt', out='out.tif'):
    return run('infer', '-c', t / 'x4.yaml', '--checkpoint', t / ck, '--input', t / inp, '--output', t / out, '--no-progress', '--in-plane', *extra)


def refused_leaving_nothing(t, result, *needles):
    "Exit 2, one line holding `needles`, and no output nor partial file in `t`."
    one_line(result[0], result[2], *needles)
    assert not [p.name for p in t.iterdir() if p.name.startswith(('out', '.out'))]


# --- class: validate before creating anything (CLI values) -----------------------------------------------------------

@pytest.mark.parametrize('flags, message', [
    (['--seed', '-1'], '--seed: must be >= 0, got -1'), (['--tile', '4'], '--tile: must be >= 8'),
    (['--tile', '33'], 'tile: must be a multiple of 2 for this network'), (['--steps', '0'], '--steps: must be >= 1'),
    (['--start', '1.5'], '--start: must be in (0, 1]'), (['--start', 'nan'], '--start: must be in (0, 1]'),
    (['--overlap', '-1'], '--overlap: must be >= 0'), (['--batch-size', '0'], '--batch-size: must be >= 1'),
    (['--n-samples', '0'], '--n-samples: must be >= 1'), (['--set', 'sampling.seed=-2'], 'sampling.seed must be >= 0'),
    (['--device', 'tpu'], '--device: must be auto, cpu, cuda or cuda:N')])
def test_infer_values_are_checked_before_any_file(job, flags, message):
    refused_leaving_nothing(job, infer(job, *flags), message)


def test_other_commands_check_their_values(job, tmp_path):
    hr = write_volume(tmp_path / 'hr.tif', np.random.default_rng(1).integers(0, 256, (2, 48, 48), dtype=np.uint8), VolumeMeta('uint8'))
    for t in ('nan', 'inf'):
        one_line(*run('eval', '--sr', hr, '--hr', hr, '--out', tmp_path / 'rep', '--threshold', t)[::2], 'threshold: must be a finite grey level')
    one_line(*run('prepare', '--hr', hr, '--scale', 4, '--out', tmp_path / 'prep', '--patch', 16, '--stride', 0)[::2], 'stride and slice_step must be >= 1')
    one_line(*run('prepare', '--hr', hr, '--scale', 4, '--out', tmp_path / 'prep', '--patch', 16, '--max-patches', 0)[::2], 'max_patches: must be >= 1')
    one_line(*run('average', tmp_path / 'm.pt', '--last', 0, '-o', tmp_path / 'a.pt')[::2], '--last 0: must be at least 1')
    assert not any((tmp_path / n).exists() for n in ('rep', 'prep', 'a.pt'))


# --- class: full or read-only disks -----------------------------------------------------------------------------------

def no_space(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')


def test_infer_on_a_full_disk_is_one_line_before_any_work(job):
    "The partial output's blocks are reserved first: no SIGBUS from a memory map on a full disk, nothing left behind."
    with mock.patch('os.posix_fallocate', no_space):
        refused_leaving_nothing(job, infer(job), 'out.tif: not enough disk space for its', 'No space left on device')


def test_infer_where_space_cannot_be_reserved_writes_zeros_first(job):
    def unsupported(*a): raise OSError(errno.EOPNOTSUPP, 'Operation not supported')
    with mock.patch('os.posix_fallocate', unsupported), mock.patch('os.pwrite', no_space):
        refused_leaving_nothing(job, infer(job), 'out.tif: not enough disk space')
    with mock.patch('os.posix_fallocate', unsupported): assert infer(job)[0] == 0


def test_a_disk_filling_up_during_infer_is_one_line(job):
    with mock.patch('sr3xct.io.write_json_atomic', lambda path, obj: no_space()):
        one_line(*infer(job)[::2], 'No space left on device')
    assert infer(job)[0] == 0   # the rerun (space freed) completes


def test_output_under_a_file_or_on_a_read_only_folder_is_one_line(job, tmp_path):
    (tmp_path / 'afile').write_text('x')
    one_line(*infer(job, out='afile/out.tif')[::2], 'afile: is a file, where a folder is needed')
    hr = write_volume(tmp_path / 'hr.tif', np.random.default_rng(1).integers(0, 256, (2, 48, 48), dtype=np.uint8), VolumeMeta('uint8'))
    def read_only(self, *a, **k): raise OSError(errno.EROFS, 'Read-only file system', str(self))
    with mock.patch('pathlib.Path.mkdir', read_only):
        one_line(*run('eval', '--sr', hr, '--hr', hr, '--out', tmp_path / 'ro' / 'rep')[::2], 'ro/rep: Read-only file system')
    assert (tmp_path / 'afile').read_text() == 'x' and not (tmp_path / 'ro').exists()


def test_eval_overwrite_replaces_the_report_as_one_unit(tmp_path):
    rng = np.random.default_rng(1)
    hr = write_volume(tmp_path / 'hr.tif', rng.integers(0, 256, (2, 48, 48), dtype=np.uint8), VolumeMeta('uint8'))
    sr = write_volume(tmp_path / 'sr.tif', rng.integers(0, 256, (2, 48, 48), dtype=np.uint8), VolumeMeta('uint8'))
    assert run('eval', '--sr', hr, '--hr', hr, '--out', tmp_path / 'rep')[0] == 0
    before = snapshot(tmp_path / 'rep')
    with mock.patch('matplotlib.figure.Figure.savefig', no_space):   # the disk fills up at the last file
        one_line(*run('eval', '--sr', sr, '--hr', hr, '--out', tmp_path / 'rep', '--overwrite')[::2], 'No space left on device')
    assert snapshot(tmp_path / 'rep') == before   # the old report, whole: no new Markdown/JSON beside an old PNG


# --- class: malformed metadata and odd files ----------------------------------------------------------------------------

def ome_tiff(path, pixels='PhysicalSizeX="2.0"', doctype=''):
    xml = (f'{doctype}<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" '
           f'DimensionOrder="XYZCT" Type="uint8" SizeX="12" SizeY="12" SizeZ="3" SizeC="1" SizeT="1" {pixels}>'
           '<Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>')
    tifffile.imwrite(path, np.random.default_rng(0).integers(0, 256, (3, 12, 12), dtype=np.uint8), description=xml,
                     metadata=None, photometric='minisblack')
    return path


LAUGHS = '<!DOCTYPE OME [' + '<!ENTITY l0 "ha">' + ''.join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)) + ']>'


@pytest.mark.parametrize('pixels, doctype, message', [
    ('PhysicalSizeX="2.0"', LAUGHS, 'OME-XML metadata declares a DOCTYPE or entities: refused'),
    ('PhysicalSizeX="2.0" <broken', '', 'OME-XML metadata is not well-formed'),
    ('PhysicalSizeX="-2.0"', '', "OME-XML PhysicalSizeX='-2.0': must be a positive number"),
    ('PhysicalSizeX="0"', '', "OME-XML PhysicalSizeX='0': must be a positive number")])
def test_malformed_ome_metadata_is_refused(job, pixels, doctype, message):
    ome_tiff(job / 'ome.tif', pixels, doctype)
    refused_leaving_nothing(job, infer(job, inp='ome.tif'), 'ome.tif: ' + message)


def test_imagej_header_announcing_fewer_images_is_refused(job):
    raw = bytearray((job / 'lr.tif').read_bytes())
    for k in (b'images=3', b'slices=3'): raw[raw.find(k):raw.find(k) + len(k)] = k[:-1] + b'2'
    (job / 'ij.tif').write_bytes(raw)
    refused_leaving_nothing(job, infer(job, inp='ij.tif'), 'ij.tif: ImageJ header announces 2 images, but the file holds 3 pages')


def test_non_positive_imagej_spacing_is_refused(job):
    raw = bytearray((job / 'lr.tif').read_bytes())
    write_volume(job / 'cal.tif', read_volume(job / 'lr.tif')[0], VolumeMeta('uint8', 3, (5.0, 1.0, 1.0), 'um'))
    raw = (job / 'cal.tif').read_bytes().replace(b'spacing=5.0', b'spacing=-.5')
    (job / 'neg.tif').write_bytes(raw)
    refused_leaving_nothing(job, infer(job, inp='neg.tif'), 'neg.tif: its metadata gives the voxel size (-0.5, 1.0, 1.0): must be positive')


def nan_at_second(sd): next(v for i, v in enumerate(sd.values()) if i == 1 and v.is_floating_point()).view(-1)[0] = float('inf')


@pytest.mark.parametrize('make, message', [
    (lambda p: checkpoint(p, config='x4'), "its 'config' entry is a str"),
    (lambda p: checkpoint(p, config={'model': dict(UNET), 'data': [4]}), "its config's 'data' section is a list"),
    (lambda p: checkpoint(p, iter='many'), "its 'iter' entry is a str"),
    (lambda p: checkpoint(p, optimizer={'lr': 1.0}), "its 'optimizer' entry is not an optimizer state"),
    (lambda p: checkpoint(p, config={'model': {**UNET, 'inner_channel': 200_000}, 'data': {'scale': 4}}),
     'weights do not fit the model: its UNet config describes a network of more than'),
    (lambda p: checkpoint(p, config={'model': {**UNET, 'res_blocks': 100_000}, 'data': {'scale': 4}}), 'weights do not fit the model: its UNet config describes a network of more than'),
    (lambda p: checkpoint(p, edit=nan_at_second), 'its weights hold NaN or Inf values (first in ')])
def test_malformed_checkpoint_is_refused(job, make, message):
    make(job / 'bad.pt')
    t0 = time.monotonic()
    refused_leaving_nothing(job, infer(job, ck='bad.pt'), 'bad.pt: ' + message)
    assert time.monotonic() - t0 < 60   # a huge network is refused before it is allocated


def test_wrongly_typed_optimizer_state_is_refused_on_resume(job, tmp_path):
    checkpoint(job / 'bad.pt', optimizer=[1, 2])
    cfg = load_config('train/16_64/small', TINY + [f'out_dir={tmp_path}/run'])
    with pytest.raises(InputError, match="bad.pt: its 'optimizer' entry is a list"): build_trainer(cfg, resume=str(job / 'bad.pt'))
    assert not (tmp_path / 'run' / 'config.yaml').exists()


def test_pipes_are_refused_without_hanging(job):
    for name in ('fifo.pt', 'fifo.tif', 'fifo.yaml'): os.mkfifo(job / name)
    refused_leaving_nothing(job, infer(job, ck='fifo.pt'), 'fifo.pt: not a regular file')
    refused_leaving_nothing(job, infer(job, inp='fifo.tif'), 'fifo.tif: not a regular file')
    one_line(*run('train', '-c', job / 'fifo.yaml')[::2], 'fifo.yaml: not a regular file')


def test_yaml_alias_bomb_is_refused(tmp_path):
    bomb = 'a: &a [x, x, x, x, x, x, x, x, x, x]\n' + ''.join(
        f'{c}: &{c} [{", ".join([f"*{p}"] * 10)}]\n' for p, c in zip('abcdefgh', 'bcdefghi'))
    (tmp_path / 'bomb.yaml').write_text(bomb)
    t0 = time.monotonic()
    one_line(*run('train', '-c', tmp_path / 'bomb.yaml')[::2], 'bomb.yaml: YAML that expands to more than 100000 values')
    one_line(*run('infer', '-c', tmp_path / 'bomb.yaml', '--input', 'x.tif', '--output', tmp_path / 'o.tif')[::2], 'alias bomb')
    assert time.monotonic() - t0 < 30 and list(tmp_path.iterdir()) == [tmp_path / 'bomb.yaml']


def test_eval_refuses_volumes_of_different_dtypes(tmp_path):
    hr = np.random.default_rng(1).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    write_volume(tmp_path / 'hr.tif', hr, VolumeMeta('uint8')); write_volume(tmp_path / 'sr.tif', hr.astype(np.uint16), VolumeMeta('uint16'))
    one_line(*run('eval', '--sr', tmp_path / 'sr.tif', '--hr', tmp_path / 'hr.tif', '--out', tmp_path / 'rep')[::2],
             'sr.tif: dtype uint16 differs from the HR volume')
    assert not (tmp_path / 'rep').exists()


# --- class: odd but valid TIFF layouts --------------------------------------------------------------------------------

@pytest.mark.parametrize('shape', [(3, 12, 1), (2, 1, 1), (12, 1), (1, 1)])
def test_thin_volumes_round_trip(tmp_path, shape):
    a = np.arange(int(np.prod(shape)), dtype=np.uint16).reshape(shape)
    back, meta = read_volume(write_volume(tmp_path / 'v.tif', a, VolumeMeta('uint16', len(shape))))
    assert back.reshape(shape).tolist() == a.tolist() and meta.ndim == len(shape)


@pytest.mark.parametrize('n', [3, 4])
def test_stack_saved_with_tifffile_defaults_reads_as_slices(job, n):
    a = np.random.default_rng(0).integers(0, 256, (n, 12, 12), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        tifffile.imwrite(job / 'planar.tif', a)   # stored as planar RGB(A) by tifffile's default
    assert (read_volume(job / 'planar.tif')[0] == a).all()
    assert infer(job, inp='planar.tif')[0] == 0 and read_volume(job / 'out.tif')[0].shape == (n, 48, 48)


def test_bad_input_found_mid_job_leaves_no_partial_file(job):
    "An `InputError` in the middle of a job it began drops the partial file; an interrupt keeps it for the rerun."
    import sr3xct.volume_job as I
    real, calls = I.super_resolve, []
    def fails_second(*a, exc=InputError('slice', 'bad'), **k):
        calls.append(1)
        if len(calls) == 2: raise exc
        return real(*a, **k)
    with mock.patch.object(I, 'super_resolve', fails_second): one_line(*infer(job, '--batch-size', 1)[::2], 'slice: bad')
    assert not [p.name for p in job.iterdir() if 'out' in p.name]
    calls.clear()
    with mock.patch.object(I, 'super_resolve', lambda *a, **k: fails_second(*a, exc=KeyboardInterrupt(), **k)):
        assert infer(job, '--batch-size', 1)[0] == 130
    assert (job / '.out.tif.partial').exists()
