"""Build the docs site with nbdev 2.

`python tools/docs.py`          runs nbdev's notebook processing into `_proc/` (what Quarto renders), which needs
                                no Quarto; this is the check the test command runs.
`python tools/docs.py --render` then renders the site with Quarto into `_docs/` (needs `quarto` on PATH).

Unlike `nbdev_docs`, this never rewrites README.md (it is written by hand) and never tries to download Quarto.
"""
import argparse, shutil, subprocess, sys
from pathlib import Path


def process_notebooks(n_workers: int):
    "Run nbdev's docs preprocessing (show_doc, flags, exports) into `_proc/` without requiring Quarto."
    import nbdev.quarto as q
    q._ensure_quarto = lambda: None  # the render step below checks for Quarto itself
    cache, cfg, _ = q._pre_docs(n_workers=n_workers)
    return Path(cache), cfg


def check_processed(cache: Path):
    "Fail unless every notebook was processed and the API pages hold `show_doc` output."
    nbs = sorted(p.name for p in Path('nbs').glob('*.ipynb'))
    missing = [n for n in nbs if not (cache / n).exists()]
    if missing: sys.exit(f"docs: notebooks missing from {cache}: {', '.join(missing)}")
    docs = [p for p in cache.glob('[0-9]*.ipynb') if 'show_doc' in p.read_text() or '<h3>' in p.read_text() or '<h4>' in p.read_text()]
    if not docs: sys.exit(f"docs: no show_doc output found in {cache}")
    print(f"docs: processed {len(nbs)} notebooks into {cache} ({len(docs)} with API docs)")


def render(cache: Path, cfg):
    "Render the processed notebooks with Quarto and move the site to `doc_path`."
    if not shutil.which('quarto'): sys.exit("docs: quarto is not installed; see https://quarto.org/docs/get-started/")
    subprocess.run(['quarto', 'render', '--no-cache'], cwd=cache, check=True)
    shutil.rmtree(cfg.doc_path, ignore_errors=True)
    shutil.move(str(cache / cfg.doc_path.name), str(cfg.config_path))
    print(f"docs: site written to {cfg.doc_path}")


if __name__ == '__main__':  # nbdev processes notebooks with multiprocessing (spawn)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--render', action='store_true', help='render the site with Quarto after processing')
    ap.add_argument('--n-workers', type=int, default=2)
    args = ap.parse_args()
    cache, cfg = process_notebooks(args.n_workers)
    check_processed(cache)
    if args.render: render(cache, cfg)
