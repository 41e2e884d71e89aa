"Losses and metrics: weight loading edge cases, skimage agreement on many inputs, 3D soil metrics, bad input."
import importlib.resources, logging, math, warnings
import numpy as np
import pytest
import torch
import tifffile
from hypothesis import given, settings, strategies as st
from skimage.metrics import structural_similarity, peak_signal_noise_ratio

from sr3xct.errors import InputError
from sr3xct import losses as L, metrics as M
from sr3xct.report import to_markdown


def fake_vgg19(path, depth=35, classifier=False, seed=0):
    "A torchvision-format VGG19 state dict of the real shapes (random values), saved to `path`."
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, ci, co in L.vgg19_convs():
        if i > depth: continue
        sd[f'features.{i}.weight'] = torch.randn(co, ci, 3, 3, generator=g) * (2 / (9 * ci)) ** .5
        sd[f'features.{i}.bias'] = torch.randn(co, generator=g) * .01
    if classifier:
        sd['classifier.0.weight'], sd['classifier.0.bias'] = torch.zeros(4, 4), torch.zeros(4)
    torch.save(sd, path)
    return path


@pytest.fixture(scope='module')
def vol():
    return tifffile.imread(importlib.resources.files('sr3xct') / 'assets' / 'sandstone_porespybinder_50x250x250_u8.tif')


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None, raising=False)
    return tmp_path


# ---------------------------------------------------------------- VGG weights
def test_vgg_full_torchvision_file_loads_strict(tmp_path):
    p = fake_vgg19(tmp_path / 'vgg19-dcbb9e9d.pth', classifier=True)
    v = L.VGGPerceptualLoss(p)  # default layers, up to relu4_4
    assert v.pretrained and len(v.features) == L.vgg19_layers()['relu4_4'] + 1
    sd = torch.load(p, weights_only=True)
    torch.testing.assert_close(v.features[5].weight, sd['features.5.weight'])
    # first layer: the RGB filters folded, never random
    w0 = sd['features.0.weight']
    std = torch.tensor(L.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(v.features[0].weight, (w0 / (2 * std)).sum(1, keepdim=True))


def test_vgg_bad_state_dicts(tmp_path):
    p = fake_vgg19(tmp_path / 'a.pth', depth=8)
    sd = torch.load(p, weights_only=True)
    sd['features.2.weight'] = torch.zeros(64, 32, 3, 3)
    torch.save(sd, tmp_path / 'b.pth')
    with pytest.raises(InputError, match=r'features.2.weight has shape'):
        L.VGGPerceptualLoss(tmp_path / 'b.pth', layers=('relu1_2',))
    torch.save({'conv.weight': torch.zeros(1)}, tmp_path / 'c.pth')
    with pytest.raises(InputError, match='unexpected keys'):
        L.VGGPerceptualLoss(tmp_path / 'c.pth', layers=('relu1_2',))
    (tmp_path / 'd.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(InputError, match='d.pth: not a loadable'):
        L.VGGPerceptualLoss(tmp_path / 'd.pth', layers=('relu1_2',))
    with pytest.raises(InputError, match='unknown VGG19 layers'):
        L.VGGPerceptualLoss(p, layers=('relu9_9',))


def test_vgg_from_hub_cache(empty_hub):
    ck = empty_hub / 'torch' / 'hub' / 'checkpoints'
    ck.mkdir(parents=True)
    fake_vgg19(ck / 'vgg19-dcbb9e9d.pth', depth=3)
    assert L.VGGPerceptualLoss(layers=('relu1_2',)).pretrained


def test_vgg_offline_download_fails_clearly(empty_hub):
    # this machine is offline: the download must fail (not hang) and the error must say how to provide weights
    with pytest.raises(InputError, match='Pass weights=PATH'):
        L.VGGPerceptualLoss(layers=('relu1_2',), download=True)


def test_vgg_random_opt_in_is_logged(empty_hub, caplog):
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        v = L.VGGPerceptualLoss(layers=('relu1_2',), allow_random=True, download=False)
    assert not v.pretrained and 'RANDOM' in caplog.text and any('RANDOM' in str(x.message) for x in w)


def test_default_loss_without_weights_errors(empty_hub, monkeypatch):
    monkeypatch.setattr(L, 'find_vgg19_weights', lambda *a, **k: (_ for _ in ()).throw(InputError('w', 'no weights')))
    with pytest.raises(InputError):
        L.SR3XCTLoss()
    assert L.SR3XCTLoss(w_perceptual=0).perceptual is None


# ---------------------------------------------------------------- SR3XCTLoss
@pytest.fixture(scope='module')
def crit(tmp_path_factory):
    p = fake_vgg19(tmp_path_factory.mktemp('vgg') / 'v.pth', depth=8)
    return L.SR3XCTLoss(w_frequency=0.01, perceptual=L.VGGPerceptualLoss(p, layers=('relu1_2', 'relu2_2')))


def test_loss_zero_and_parts(crit):
    hr = torch.rand(3, 1, 24, 24) * 2 - 1
    n = torch.randn_like(hr)
    total, parts = crit(n, n, hr, hr)
    assert total.item() == pytest.approx(0, abs=1e-7)
    assert set(parts) == {'l1', 'ssim', 'perceptual', 'multiscale', 'frequency', 'total'}
    assert all(not v.requires_grad for v in parts.values())


def test_loss_clamps_x0(crit):
    hr = torch.rand(2, 1, 24, 24) * 2 - 1
    n = torch.randn_like(hr)
    a, _ = crit(n, n, hr.clamp(-1, 1) * 5, hr)
    b, _ = crit(n, n, (hr * 5).clamp(-1, 1), hr)
    torch.testing.assert_close(a, b)


def test_loss_in_diffusion_grads(crit):
    "Inside the real GaussianDiffusion: gradients reach the UNet, never VGG."
    diffusion = pytest.importorskip('sr3xct.diffusion')
    unet = pytest.importorskip('sr3xct.unet')
    net = unet.UNet(in_channel=2, out_channel=1, inner_channel=8, norm_groups=4, channel_mults=(1, 2), attn_res=(),
                    res_blocks=1, image_size=32)
    d = diffusion.GaussianDiffusion(net, n_timestep=100)
    hr, cond = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    loss, parts = d.p_losses(hr, cond, crit, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert list(crit.parameters()) == []
    assert all(b.grad is None and not b.requires_grad for b in crit.buffers())
    assert not any(k.startswith('loss.') for k in d.state_dict())  # VGG weights stay out of checkpoints


@pytest.mark.parametrize('bad', ['noise_pred', 'x0_pred', 'weights', 'batch'])
def test_loss_shape_errors(crit, bad):
    hr = torch.rand(2, 1, 16, 16)
    n, npred, x0, w = hr.clone(), hr.clone(), hr.clone(), torch.ones(2)
    if bad == 'noise_pred': npred = npred[..., :8]
    if bad == 'x0_pred': x0 = x0[:, :, :8]
    if bad == 'weights': w = torch.ones(2, 1)
    if bad == 'batch': n = npred = torch.rand(3, 1, 16, 16)
    with pytest.raises(InputError, match='x0_pred|noise_pred|weights|batch'):
        crit(n, npred, x0, hr, w)


def test_loss_weights_are_weighted_mean(crit):
    hr = torch.rand(2, 1, 24, 24) * 2 - 1
    n, x0 = torch.randn_like(hr), hr + 0.3 * torch.randn_like(hr)
    w = torch.tensor([0.5, 1.5])
    _, p = crit(n, n + 0.2, x0, hr, w)
    _, p0 = crit(n[:1], n[:1] + 0.2, x0[:1], hr[:1])
    _, p1 = crit(n[1:], n[1:] + 0.2, x0[1:], hr[1:])
    for k in ('ssim', 'perceptual', 'multiscale', 'frequency', 'l1'):
        assert float(p[k]) == pytest.approx((0.5 * float(p0[k]) + 1.5 * float(p1[k])) / 2, rel=1e-4, abs=1e-6)


def test_loss_dtype_and_bf16_module(crit):
    hr = torch.rand(2, 1, 24, 24) * 2 - 1
    n, x0 = torch.randn_like(hr), hr + 0.3 * torch.randn_like(hr)
    ref, _ = crit(n, n + .1, x0, hr)
    cb = L.SR3XCTLoss(perceptual=crit.perceptual).to(torch.bfloat16)
    assert cb.perceptual.features[0].weight.dtype == torch.bfloat16
    t, _ = cb(n.bfloat16(), (n + .1).bfloat16(), x0.bfloat16(), hr.bfloat16())
    assert torch.isfinite(t) and float(t) == pytest.approx(float(ref), rel=0.05)
    crit.float()


# ---------------------------------------------------------------- SSIM / PSNR vs scikit-image
@settings(max_examples=15, deadline=None)
@given(st.integers(11, 40), st.integers(11, 40), st.integers(0, 2 ** 31), st.sampled_from([1.0, 2.0, 255.0]))
def test_ssim_psnr_match_skimage(h, w, seed, dr):
    r = np.random.default_rng(seed)
    a = r.random((h, w)) * dr
    b = np.clip(a + r.normal(0, 0.1 * dr, a.shape), 0, dr)
    sk = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=dr)
    assert M.ssim(b, a, dr) == pytest.approx(sk, abs=1e-4)
    t = L.ssim(torch.tensor(b, dtype=torch.float32)[None, None], torch.tensor(a, dtype=torch.float32)[None, None], dr)
    assert float(t) == pytest.approx(sk, abs=1e-4)
    assert M.psnr(b, a, dr) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=dr), abs=1e-4)


def test_ssim_real_ct_slices_torch_float32(vol):
    hr = vol[5:9].astype(np.float64) / 127.5 - 1
    sr = np.clip(hr + np.random.default_rng(1).normal(0, .15, hr.shape), -1, 1)
    per = L.ssim(torch.tensor(sr).float()[:, None], torch.tensor(hr).float()[:, None], 2.0, reduction='none')
    for i in range(4):
        sk = structural_similarity(hr[i], sr[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=2.0)
        assert float(per[i]) == pytest.approx(sk, abs=1e-4)


def test_ssim_too_small_and_bad_reduction():
    with pytest.raises(InputError, match='smaller than win_size'):
        M.ssim(np.zeros((5, 5)), np.zeros((5, 5)), 1.0)
    with pytest.raises(InputError, match='reduction'):
        M.psnr(np.zeros((5, 5)), np.ones((5, 5)), 1.0, reduction='sum')


# ---------------------------------------------------------------- soil metrics
def ball(shape, c, r):
    g = np.indices(shape)
    return sum((gi - ci) ** 2 for gi, ci in zip(g, c)) <= r * r


def test_3d_sphere_closed_forms():
    s = ball((36, 36, 36), (18, 18, 18), 9)
    assert M.porosity(s) == pytest.approx(s.mean())
    assert M.pore_size_distribution(s)['mean_radius'] == pytest.approx(9, abs=1)
    assert M.specific_surface_area(s) * s.size == pytest.approx(4 * np.pi * 81, rel=0.03)
    assert M.euler_characteristic(s) == 1
    assert M.euler_characteristic(s & ~ball(s.shape, (18, 18, 18), 4)) == 2  # hollow sphere: one cavity


def test_3d_sphere_pack_psd():
    pack = np.zeros((40, 40, 40), bool)
    big, small = ball(pack.shape, (12, 12, 12), 8), ball(pack.shape, (30, 30, 30), 4)
    pack = big | small
    expected = (8 * big.sum() + 4 * small.sum()) / pack.sum()
    assert M.pore_size_distribution(pack)['mean_radius'] == pytest.approx(expected, abs=1)
    assert M.euler_characteristic(pack) == 2


def test_3d_two_point_against_2d_definition():
    r = np.random.default_rng(3).random((12, 20, 20)) < 0.35
    tp = M.two_point_correlation(r, r_max=3)
    assert tp['s2'][0] == pytest.approx(r.mean())
    assert tp['s2'][1:] == pytest.approx([r.mean() ** 2] * 3, abs=0.02)


@pytest.mark.parametrize('ndim', [2, 3])
def test_all_pore_all_solid_defined(ndim):
    shape = (8,) * ndim
    for m, phi in ((np.zeros(shape, bool), 0.0), (np.ones(shape, bool), 1.0)):
        assert M.porosity(m) == phi
        assert M.specific_surface_area(m) == 0.0
        assert math.isnan(M.two_point_correlation(m, r_max=2)['correlation_length'])
    assert M.pore_size_distribution(np.zeros(shape, bool))['mean_radius'] == 0.0
    assert math.isnan(M.pore_size_distribution(np.ones(shape, bool))['mean_radius'])
    assert M.euler_characteristic(np.zeros(shape, bool)) == 0
    assert M.euler_characteristic(np.ones(shape, bool)) == 1


def test_threshold_reused_and_pore_side():
    img = np.array([[10, 10, 200, 200]] * 4, np.uint8)
    assert M.porosity(img, threshold=100) == 0.5
    assert M.porosity(img, threshold=5) == 0.0  # threshold given: not recomputed
    assert M.porosity(img, threshold=100, pore='bright') == 0.5
    with pytest.raises(InputError, match='pore'):
        M.porosity(img, threshold=100, pore='grey')


# ---------------------------------------------------------------- compare
def test_compare_3d_volume(vol):
    hr = vol[:4, :64, :64]
    lr = hr.reshape(4, 16, 4, 16, 4).mean((2, 4)).astype(np.uint8)
    sr = np.clip(hr + np.random.default_rng(0).normal(0, 8, hr.shape), 0, 255).astype(np.uint8)
    tab = M.compare(sr, hr, lr)
    assert tab['scale'] == 4 and tab['columns'] == ['bicubic', 'sr', 'hr'] and tab['shape'] == (4, 64, 64)
    assert tab['metrics']['ssim']['sr'] == pytest.approx(
        np.mean([structural_similarity(hr[i], sr[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255) for i in range(4)]), abs=1e-4)
    up = M.bicubic_upsample(lr, 4)
    assert up.shape == hr.shape and up.min() >= 0 and up.max() <= 255
    md = to_markdown(tab)
    metrics_table = md.split('\n\n')[0]
    assert metrics_table.count('\n|') == len(M.METRICS) + 1 and '| psnr |' in md
    assert set(tab['isotropy']) == {'bicubic', 'sr'} and '| PSNR on (Z, X) planes |' in md   # a volume: the isotropy table too
    mask = M.pore_mask(hr, tab['threshold'])
    for k, a in zip('zyx', range(3)):   # the pores' correlation length along each axis, of SR and of HR
        assert '| correlation length along ' + k.upper() in md
        assert tab['isotropy']['sr'][f'corr_{k}_hr'] == pytest.approx(M.two_point_along(mask, a)['correlation_length'], nan_ok=True)


@pytest.mark.parametrize('case,match', [
    ('shape', 'does not match'), ('nan', 'NaN'), ('constant', 'constant image'), ('lr', 'lr'),
    ('float', 'data_range'), ('dims', '2D image or a 3D volume')])
def test_compare_bad_input(case, match):
    r = np.random.default_rng(0)
    hr = (r.random((32, 32)) * 255).astype(np.uint8)
    sr, lr, kw = hr.copy(), None, {}
    if case == 'shape': sr = sr[:16]
    if case == 'nan': sr = sr.astype(float); sr[3, 3] = np.nan; kw['data_range'] = 255
    if case == 'constant': hr = np.full_like(hr, 7)
    if case == 'lr': lr = hr[:10, :10]
    if case == 'float': sr, hr = sr.astype(float), hr.astype(float)
    if case == 'dims': sr, hr = sr[None, None], hr[None, None]
    with pytest.raises(InputError, match=match):
        M.compare(sr, hr, lr, **kw)


def test_compare_constant_hr_with_threshold_is_defined():
    hr = np.full((32, 32), 7, np.uint8)
    tab = M.compare(hr.copy(), hr, threshold=100)
    assert tab['metrics']['porosity']['hr'] == 1.0 and tab['metrics']['psnr']['sr'] == float('inf')
