"""Soak run (issue 8, "Reliability"): many training steps of the small config, checking that no step is skipped
(no NaN/Inf loss or gradient) and that resident memory does not creep up.

Trains `train/16_64/small` through `sr3xct.config.load_config` and `build_trainer` (validation off, a checkpoint every
`--save-every` steps, no TensorBoard, no progress bar, everything in a temporary folder) with a small callback that
reads the resident set size from /proc/self/statm every `--every` steps. Prints one row per sample (iteration, RSS,
growth since the baseline, skipped steps, mean loss since the previous row, it/s) and then the RSS growth from the
baseline step (default 100: allocator pools and the first checkpoint are warm by then) to the end, in percent; the
goal is under 5%.

    python bench/soak.py [--steps 1000] [--every 50] [--baseline 100] [--threads 2] [--max-growth 5]
                         [--config train/16_64/small] [--set KEY=VALUE ...] [--keep DIR]

Exit status 0 when no step was skipped, the final weights are finite and the growth stays under --max-growth;
1 otherwise. glibc's malloc settings change RSS behaviour: the header prints the MALLOC_* variables in effect.
"""
import argparse, math, os, sys, tempfile, time
from pathlib import Path

import torch

from sr3xct.config import build_trainer, load_config
from sr3xct.train import Callback

PAGE = os.sysconf('SC_PAGE_SIZE')


def rss_mb() -> float:
    "Resident set size of this process in MiB (/proc/self/statm: size resident shared text lib data dt, in pages)."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * PAGE / 2**20


class RSSSampler(Callback):
    "Every `every` iterations (and at the start and the end): RSS, skipped steps, the mean loss since the last sample."
    order = 100   # after every other callback, checkpointing included
    def __init__(self, every: int):
        self.every, self.rows, self.losses = every, [], []
    def before_fit(self, t):
        self.t0, self.i0 = time.perf_counter(), t.state.iter
        self.sample(t)
    def after_iter(self, t):
        if not t.state.skipped: self.losses.append(float(t.state.loss.detach()))
        if t.state.iter % self.every == 0: self.sample(t)
    def after_fit(self, t):
        if self.rows[-1]['iter'] != t.state.iter: self.sample(t)
    def sample(self, t):
        now = time.perf_counter()
        its = (t.state.iter - self.i0) / (now - self.t0) if now > self.t0 and t.state.iter > self.i0 else float('nan')
        self.rows.append({'iter': t.state.iter, 'rss_mb': rss_mb(), 'skipped': t.state.n_skipped, 'it_per_s': its,
                          'loss': sum(self.losses) / len(self.losses) if self.losses else float('nan')})
        self.t0, self.i0, self.losses = now, t.state.iter, []


def baseline_row(rows: list, step: int) -> dict:
    "The first sample at or after `step` (for a run shorter than 2 * `step`: after half the run)."
    step = min(step, rows[-1]['iter'] // 2)
    return next(r for r in rows if r['iter'] >= step)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=1000, help='training steps (default 1000)')
    p.add_argument('--every', type=int, default=50, help='sample RSS every N steps (default 50)')
    p.add_argument('--baseline', type=int, default=100, help='growth is measured from this step on (default 100)')
    p.add_argument('--save-every', type=int, default=250, help='checkpoint every N steps (default 250)')
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    p.add_argument('--max-growth', type=float, default=5.0, help='RSS growth in percent that fails the run (default 5)')
    p.add_argument('--config', default='train/16_64/small', help='training config (default train/16_64/small)')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='more config overrides')
    p.add_argument('--keep', help='run folder to keep (default: a temporary folder, removed at the end)')
    a = p.parse_args(argv)
    if a.steps < 1 or a.every < 1: p.error('--steps and --every must be at least 1')
    with tempfile.TemporaryDirectory(prefix='sr3xct-soak-') as tmp:
        out = Path(a.keep) if a.keep else Path(tmp)
        sets = [f'train.n_iter={a.steps}', f'train.threads={a.threads}', 'log.val_freq=0', f'log.save_freq={a.save_every}',
                'log.keep_last=2', 'log.tensorboard=false', 'log.progress=false', f'log.print_freq={a.every}',
                f'out_dir={out}/{{name}}'] + a.set
        cfg = load_config(a.config, sets)
        sampler = RSSSampler(a.every)
        malloc = {k: v for k, v in os.environ.items() if k.startswith('MALLOC_')}
        print(f'# soak: {a.config}, {a.steps} steps, batch {cfg.data.batch_size} x {cfg.data.patch}px, '
              f'{cfg.train.precision}, {a.threads} threads, torch {torch.__version__}; '
              f"malloc {' '.join(f'{k}={v}' for k, v in malloc.items()) or 'default'}; run in {cfg.run_dir}")
        t0 = time.perf_counter()
        trainer = build_trainer(cfg, where=a.config, extra_cbs=[sampler])
        trainer.fit()
        wall = time.perf_counter() - t0
        finite = all(torch.isfinite(v).all() for v in trainer.net.state_dict().values() if v.is_floating_point())
    rows = sampler.rows
    base = baseline_row(rows, a.baseline)
    print('\n| iter | RSS MiB | vs baseline | skipped | mean loss | it/s |')
    print('|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        d = (r['rss_mb'] / base['rss_mb'] - 1) * 100 if r['iter'] >= base['iter'] else None
        fmt = lambda v, spec: '' if v is None or math.isnan(v) else format(v, spec)
        print(f"| {r['iter']} | {r['rss_mb']:.1f} | {fmt(d, '+.2f')}{'%' if d is not None else ''} | {r['skipped']} | "
              f"{fmt(r['loss'], '.4f')} | {fmt(r['it_per_s'], '.2f')} |")
    after = [r for r in rows if r['iter'] >= base['iter']]
    growth = (rows[-1]['rss_mb'] / base['rss_mb'] - 1) * 100
    peak = (max(r['rss_mb'] for r in after) / base['rss_mb'] - 1) * 100
    skipped = trainer.state.n_skipped
    ok = skipped == 0 and finite and growth < a.max_growth
    print(f"\nRSS growth from step {base['iter']} ({base['rss_mb']:.1f} MiB) to step {rows[-1]['iter']} "
          f"({rows[-1]['rss_mb']:.1f} MiB): {growth:+.2f}% (largest {peak:+.2f}%; goal < {a.max_growth:g}%)")
    print(f'skipped steps: {skipped}; final weights finite: {finite}; {trainer.state.iter} steps in {wall:.0f} s '
          f'({trainer.state.iter / wall:.2f} it/s with start-up)')
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
