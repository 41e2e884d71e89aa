"""Write `nbs/index.ipynb` (the docs site's front page) from README.md, which is written by hand.

    python tools/index_from_readme.py          # write nbs/index.ipynb
    python tools/index_from_readme.py --check  # exit 1 if nbs/index.ipynb does not say what README.md says

The first line of the README (`# title`) and its first paragraph become nbdev's title cell (`# title` and
`> description`); the rest is one Markdown cell. Paths under `nbs/` lose that prefix (the site is built from `nbs/`).
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def index_cells(readme:str) -> list[str]:
    "The Markdown of the index notebook's cells: the title cell, then the rest of the README."
    title, rest = readme.split('\n', 1)
    desc, body = rest.strip('\n').split('\n\n', 1)
    return [f"{title}\n\n> {desc.strip()}", body.strip('\n').replace('(nbs/', '(')]


def notebook(cells:list[str]) -> dict:
    return {'cells': [{'cell_type': 'markdown', 'id': f'{i:08x}', 'metadata': {}, 'source': c.splitlines(keepends=True)}
                      for i, c in enumerate(cells)],
            'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}


def current_cells(path:Path) -> list[str]:
    return [''.join(c['source']) for c in json.loads(path.read_text())['cells']]


if __name__ == '__main__':
    want = index_cells((ROOT / 'README.md').read_text())
    path = ROOT / 'nbs' / 'index.ipynb'
    if '--check' in sys.argv:
        if not path.exists() or current_cells(path) != want:
            sys.exit(f'{path}: does not say what README.md says; run python tools/index_from_readme.py')
        print('index: nbs/index.ipynb matches README.md')
    else:
        path.write_text(json.dumps(notebook(want), indent=1, ensure_ascii=False) + '\n')
        print(f'wrote {path}')
