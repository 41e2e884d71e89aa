"""Issue 14, item 14: threads and progress bars on shared machines.

PyTorch's default thread count is kept (sr3xct sets threads only for `--threads` / `train.threads`); these tests
check the assumption behind that: the default never exceeds the cores the process may use (its CPU affinity), and
torchrun gives each of its processes one thread. A training progress bar written to a file or a pipe refreshes
every 30 s, not ten times a second."""
import io, os, shutil, subprocess, sys, time
from types import SimpleNamespace

import pytest

PROBE = 'import os, torch; print(torch.get_num_threads(), len(os.sched_getaffinity(0)), os.environ.get("LOCAL_WORLD_SIZE"))'
ENV = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}


def probe(*prefix) -> list[tuple]:
    out = subprocess.run([*prefix, sys.executable, '-c', PROBE], env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [tuple(l.split()) for l in out.stdout.splitlines() if l.strip()]


def test_default_threads_fit_the_affinity():
    (threads, cores, _), = probe()
    assert int(threads) <= int(cores)


@pytest.mark.skipif(not shutil.which('taskset'), reason='needs taskset')
def test_default_threads_follow_a_restricted_affinity():
    (threads, cores, _), = probe('taskset', '-c', '0')
    assert (threads, cores) == ('1', '1')


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason='needs 2 cores')
def test_torchrun_gives_each_process_one_thread():
    rows = probe(sys.executable, '-m', 'torch.distributed.run', '--standalone', '--no-python', '--nproc-per-node', '2')
    rows = [r for r in rows if len(r) == 3 and r[0].isdigit()]
    assert len(rows) == 2 and all(r[0] == '1' and r[2] == '2' for r in rows), rows


def test_training_progress_bar_is_quiet_in_a_log_file(monkeypatch):
    from sr3xct.train import ProgressBar
    log = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', log)
    t = SimpleNamespace(n_iter=40, state=SimpleNamespace(iter=0, last_log=None))
    bar = ProgressBar(); bar.before_fit(t)
    for i in range(40):
        t.state.iter = i + 1; time.sleep(0.02); bar.after_iter(t)
    bar.after_fit(t)
    assert log.getvalue().count('\r') <= 3, log.getvalue()   # the first and the last line, not one per 0.1 s
