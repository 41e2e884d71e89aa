"DDP with torchrun: 2 CPU processes on gloo, through `python -m sr3xct.cli` and the Python API."
import json, os, subprocess, sys, textwrap
from pathlib import Path

import pytest
import yaml

from sr3xct.checkpoint import load_checkpoint
from test_train import tiny_config, write

TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']


def run(args, timeout=90):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(TORCHRUN + list(map(str, args)), capture_output=True, text=True, timeout=timeout, env=env)


WORKER = textwrap.dedent('''
    import json, sys, torch, torch.distributed as dist
    from sr3xct.config import load_config, build_trainer
    t = build_trainer(load_config(sys.argv[1], ['train.n_iter=12']), resume='auto')
    start = t.state.iter
    t.fit()
    flat = torch.cat([p.detach().flatten() for p in t.net.parameters()])
    ts = t.loss_module.module.diffusion.timestep_sampler.state_dict()
    hist = torch.cat([v.flatten().float() for v in ts.values() if torch.is_tensor(v)])
    out = [None, None]
    dist.all_gather_object(out, (start, flat, hist, len(t.loader.sampler), t.loader.sampler.rank))
    if dist.get_rank() == 0:
        (a, b) = out
        json.dump({'start': [a[0], b[0]], 'same_params': bool(torch.equal(a[1], b[1])), 'same_hist': bool(torch.equal(a[2], b[2])),
                   'hist_nonzero': bool(a[2].abs().sum() > 0), 'ranks': [a[4], b[4]]}, open(sys.argv[2], 'w'))
    dist.barrier()
    dist.destroy_process_group()
''')


def test_ddp_two_cpu_processes(tmp_path):
    rd = tmp_path / 'run'
    cfg = write(tmp_path, tiny_config(rd, train={'n_iter': 8}, log={'val_freq': 4, 'save_freq': 4, 'print_freq': 2, 'tensorboard': False}))
    r = run(['-m', 'sr3xct.cli', 'train', '-c', cfg])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count('done: 8 iterations') == 1  # rank 0 only
    ck = load_checkpoint(rd / 'checkpoints' / 'iter_00000008.pt')
    assert ck['iter'] == 8 and isinstance(ck['rng'], list) and len(ck['rng']) == 2
    recs = [json.loads(l) for l in (rd / 'log.jsonl').read_text().splitlines()]
    assert [r['iter'] for r in recs if 'lr' in r] == [2, 4, 6, 8]  # one writer
    assert (rd / 'val' / 'iter_00000008.png').is_file()
    # resume under DDP through the Python API; ranks end with identical weights and importance history
    (tmp_path / 'worker.py').write_text(WORKER)
    r = run([tmp_path / 'worker.py', cfg, tmp_path / 'out.json'])
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((tmp_path / 'out.json').read_text())
    assert out == {'start': [8, 8], 'same_params': True, 'same_hist': True, 'hist_nonzero': True, 'ranks': [0, 1]}
