"ImportanceSampler under torch.distributed: 2 processes on gloo keep identical histories holding every rank's losses."
import os, socket
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sr3xct.diffusion import ImportanceSampler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    try:
        s = ImportanceSampler(100, n_buckets=4, history=3)
        # rank r reports steps in bucket r only (rank 1 with a batch one shorter), losses tagged by rank
        for it in range(3):
            n = 4 - rank
            t = torch.full((n,), 25 * rank + it, dtype=torch.long)
            before = s.counts.clone()
            s.update(t, torch.full((n,), 10.0 * rank + it))
            assert torch.equal(s.counts, before), 'update applied locally under DDP'
            s.all_gather()
        g = torch.Generator().manual_seed(rank)
        t, w = s.sample(16, g)
        torch.save({'state': s.state_dict(), 't': t, 'w': w}, f'{out}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def test_importance_sampler_all_gather(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    s0, s1 = r0['state'], r1['state']
    assert torch.equal(s0['losses'], s1['losses']) and torch.equal(s0['counts'], s1['counts'])
    # buckets 0 and 1 hold the last 3 losses of ranks 0 and 1; buckets 2 and 3 saw nothing
    assert s0['counts'].tolist() == [3, 3, 0, 0]
    assert s0['losses'][0].tolist() == [2.0, 2.0, 2.0] and s0['losses'][1].tolist() == [12.0, 12.0, 12.0]
    # not warm (buckets 2, 3 empty): both ranks draw uniformly with weight 1
    assert torch.equal(r0['w'], torch.ones(16)) and torch.equal(r1['w'], torch.ones(16))


def test_all_gather_without_process_group_applies_pending():
    s = ImportanceSampler(10, n_buckets=2, history=1)
    s.update(torch.tensor([0, 9]), torch.tensor([1.0, 3.0]))
    s.all_gather()                          # no process group: a no-op after update applied the losses
    assert s.counts.tolist() == [1, 1] and s.warm
    t, w = s.sample(20000, torch.Generator().manual_seed(0))
    frac = (t >= 5).double().mean().item()  # p = 0.95 * 3/4 + 0.05/2 = 0.7375 for the second bucket
    assert abs(frac - 0.7375) < 0.015
    assert torch.allclose(w[t >= 5], torch.tensor(5 / (10 * 0.7375)))
