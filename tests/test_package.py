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
