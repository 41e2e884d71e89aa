"The installed package: version, assets and packaged files that users rely on."
from importlib import resources
import sr3xct


def test_version_matches_settings(repo):
    ini = (repo / 'settings.ini').read_text()
    assert f'version = {sr3xct.__version__}' in ini


def test_sandstone_asset_ships_with_notice():
    assets = resources.files('sr3xct') / 'assets'
    assert (assets / 'sandstone_porespybinder_50x250x250_u8.tif').is_file()
    assert 'Unlicense' in (assets / 'NOTICE.md').read_text()


def test_index_notebook_says_what_the_readme_says(repo):
    "nbs/index.ipynb (the docs front page) is written from README.md by tools/index_from_readme.py."
    import subprocess, sys
    r = subprocess.run([sys.executable, 'tools/index_from_readme.py', '--check'], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_images_exist(repo):
    "Every image the README shows is in the repository (the docs site gets them from nbs/)."
    import re
    for path in re.findall(r'!\[[^\]]*\]\(([^)]+)\)', (repo / 'README.md').read_text()):
        assert (repo / path).is_file(), path
        assert path.startswith('nbs/'), f'{path}: put README images under nbs/ so that the docs site has them too'


def test_readme_test_command_is_what_ci_runs(repo):
    "CI runs the test command the README gives."
    assert '\nmake test\n' in (repo / '.ci' / 'run').read_text()
    assert 'make test     #' in (repo / 'README.md').read_text()
