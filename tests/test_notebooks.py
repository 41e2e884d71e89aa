"Notebook hygiene that nbdev's docs build relies on."
import ast, json, re
from pathlib import Path

import pytest

NBS = sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('*.ipynb'))
IMPORT = re.compile(r'^(import|from)\s+\S+')


def code_cells(path):
    for i, c in enumerate(json.loads(path.read_text())['cells']):
        if c['cell_type'] == 'code': yield i, ''.join(c['source'])


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_imports_sit_in_cells_of_their_own(path):
    """nbdev's docs processing executes every cell holding an import anywhere in it (inside a `with` or a function
    too; test flags ignored): such a cell must hold only imports, or be exported library code, or the docs build
    runs (or fails on) the rest of the cell."""
    bad = []
    for i, src in code_cells(path):
        if re.search(r'^#\|\s*export', src, re.M): continue
        try: tree = ast.parse('\n'.join(l for l in src.split('\n') if not l.lstrip().startswith(('%', '!'))))
        except SyntaxError: continue
        imports = (ast.Import, ast.ImportFrom)
        if not any(isinstance(n, imports) for n in ast.walk(tree)): continue
        others = [n for n in tree.body if not isinstance(n, imports)]
        if others: bad.append(f'cell {i}: line {others[0].lineno} {ast.get_source_segment(src, others[0]) or ""!r:.60}')
    assert not bad, f'{path.name}: imports mixed with code in ' + '; '.join(bad)


@pytest.mark.parametrize('path', NBS, ids=[p.stem for p in NBS])
def test_module_notebooks_name_their_module(path):
    "Numbered notebooks export one module each, named by `#| default_exp`."
    if not path.stem[0].isdigit(): return
    first = next(src for _, src in code_cells(path))
    assert re.match(r'#\|\s*default_exp\s+\w+', first), f'{path.name}: the first code cell must be `#| default_exp NAME`'
