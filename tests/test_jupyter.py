"""Notebooks show their figures in a plain Jupyter kernel, not only under nbdev's runner (issue 14, item 9)."""
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip('nbformat', reason='needs the dev extra (nbclient, ipykernel)')
nbclient = pytest.importorskip('nbclient', reason='needs the dev extra (nbclient, ipykernel)')
pytest.importorskip('ipykernel', reason='needs the dev extra (nbclient, ipykernel)')

NBS = Path(__file__).resolve().parents[1] / 'nbs'


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]


@pytest.mark.parametrize('backend', ['inline', 'Agg'])
def test_viz_notebook_shows_figures_in_a_plain_kernel(backend, monkeypatch):
    """09_viz run top to bottom by nbclient in an ipykernel (what JupyterLab runs): every figure cell gives a PNG,
    none prints `<Figure size ...>`; with the kernel's default backend and with `MPLBACKEND=Agg` (as `make` sets)."""
    if backend == 'Agg': monkeypatch.setenv('MPLBACKEND', 'Agg')
    else: monkeypatch.delenv('MPLBACKEND', raising=False)
    monkeypatch.setenv('OMP_NUM_THREADS', os.environ.get('OMP_NUM_THREADS', '1'))
    nb = nbformat.read(NBS / '09_viz.ipynb', as_version=4)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
    outs = outputs(nb)
    pngs = [o for o in outs if 'image/png' in o.get('data', {})]
    as_text = [o['data']['text/plain'] for o in outs if o.get('data', {}).get('text/plain', '').startswith('<Figure size')]
    assert not as_text, f'figures printed as text: {as_text}'
    assert len(pngs) >= 4, f'{len(pngs)} PNG outputs; expected one per figure cell (4)'
