"""Property tests (hypothesis): augmentations and intensity scaling keep shape, dtype and finiteness, and scaling
round-trips to the input dtype; tiled blending returns a constant image unchanged; every sampler gives the same
output from the same generator, whatever the global RNG does."""
import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from sr3xct.augment import AugmentConfig, apply_params, draw_params, gaussian_blur
from sr3xct.resample import degrade, upsample
from sr3xct.diffusion import SAMPLERS, GaussianDiffusion, sample
from sr3xct.infer import tiled_apply
from sr3xct.io import IntensityScaling
from sr3xct.unet import UNet

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


# ------------------------------------------------------------------ augmentation

def images(draw, shape):
    "HR-like content in [-1, 1]: noise, a constant (the range ends included) or a binary pore/solid image."
    kind = draw(st.sampled_from(['noise', 'constant', 'binary']))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if kind == 'noise': return torch.rand(shape, generator=g) * 2 - 1
    if kind == 'constant': return torch.full(shape, draw(st.sampled_from([-1.0, 1.0, 0.0, 0.37])))
    return torch.where(torch.rand(shape, generator=g) < 0.4, -1.0, 1.0)


PROB = st.sampled_from([0.0, 0.5, 1.0])


@SETTINGS
@given(data=st.data(), scale=st.sampled_from([2, 4, 8]), h=st.integers(1, 6), w=st.integers(1, 6),
       hflip=PROB, vflip=PROB, rot90=PROB, noise_p=PROB, blur_p=PROB, intensity_p=PROB, input_from_lr=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_augment_keeps_shape_dtype_range(data, scale, h, w, hflip, vflip, rot90, noise_p, blur_p, intensity_p,
                                         input_from_lr, seed):
    hr = images(data.draw, (1, h * scale, w * scale))
    lr = degrade(hr[None], scale)[0]
    cond = upsample(lr[None], scale)[0]
    cfg = AugmentConfig(hflip=hflip, vflip=vflip, rot90=rot90, noise_p=noise_p, noise_std=(0.0, 0.5), blur_p=blur_p,
                        blur_sigma=(0.3, 2.0), intensity_p=intensity_p, alpha=(0.5, 1.5), beta=(-0.5, 0.5),
                        input_from_lr=input_from_lr)
    g = torch.Generator().manual_seed(seed)
    p = draw_params(cfg, g)
    out = apply_params(lr, cond, hr, p, g, input_from_lr)
    for before, after in zip((lr, cond, hr), out):
        H, W = before.shape[-2:]
        assert after.shape == ((1, W, H) if p['rot90'] else (1, H, W)) and after.dtype == torch.float32
        assert torch.isfinite(after).all() and after.abs().max() <= 1
    # hr only ever moves (flips, rot90) or changes contrast: without the intensity change it is a permutation of the input
    if p['alpha'] is None: assert torch.equal(out[2].flatten().sort().values, hr.flatten().sort().values)


@SETTINGS
@given(c=st.floats(-1, 1, width=32), sigma=st.floats(0.05, 6.0), h=st.integers(1, 20), w=st.integers(1, 20))
def test_blur_keeps_shape_and_constants(c, sigma, h, w):
    "Blurring (reflecting edges, any sigma, images smaller than the kernel included) keeps the shape and a constant image."
    x = torch.full((2, 1, h, w), c, dtype=torch.float64)
    y = gaussian_blur(x, sigma)
    assert y.shape == x.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)


# ------------------------------------------------------------------ intensity scaling

SHAPES = hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6)


@SETTINGS
@given(data=st.data(), dtype=st.sampled_from(['uint8', 'uint16', 'int16']), method=st.sampled_from(['dtype', 'minmax']))
def test_integer_scaling_round_trips_exactly(data, dtype, method):
    a = data.draw(hnp.arrays(dtype, SHAPES))
    if method == 'minmax': assume(a.min() < a.max())
    sc = IntensityScaling.from_dtype(dtype) if method == 'dtype' else IntensityScaling.from_percentiles(a, 0, 100)
    y = sc.forward(a)
    assert y.shape == a.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1
    back = sc.inverse(y)
    assert back.dtype == a.dtype and back.shape == a.shape
    np.testing.assert_array_equal(back, a)
    # through torch too (the network's side), and back from a tensor
    np.testing.assert_array_equal(sc.inverse(sc.forward(torch.from_numpy(a.astype(np.int64)))), a)


@SETTINGS
@given(data=st.data(), method=st.sampled_from(['dtype', 'minmax']))
def test_float32_scaling_round_trips(data, method):
    "float32 comes back as float32, equal to within a few float32 steps of the window (the map itself rounds)."
    lo, hi = (0.0, 1.0) if method == 'dtype' else (-1e6, 1e6)
    a = data.draw(hnp.arrays(np.float32, SHAPES, elements=st.floats(lo, hi, width=32)))
    if method == 'minmax': assume(a.min() < a.max())
    sc = IntensityScaling.from_dtype('float32') if method == 'dtype' else IntensityScaling.from_percentiles(a, 0, 100)
    y = sc.forward(a)
    assert y.shape == a.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1
    back = sc.inverse(y)
    assert back.dtype == np.float32 and back.shape == a.shape and np.isfinite(back).all()
    np.testing.assert_allclose(back, a, rtol=0, atol=4 * np.finfo(np.float32).eps * (sc.high - sc.low))
    assert back.min() >= sc.low and back.max() <= sc.high


# ------------------------------------------------------------------ tiling and blending

@SETTINGS
@given(data=st.data(), b=st.integers(1, 2), h=st.integers(1, 40), w=st.integers(1, 40), tile=st.integers(4, 24),
       batch_size=st.integers(1, 5), k=st.integers(1, 2), c=st.floats(-1, 1, width=32))
def test_tiled_apply_keeps_a_constant_image(data, b, h, w, tile, batch_size, k, c):
    "Any image size (smaller than a tile too), tile, overlap and batch: a constant image comes back unchanged."
    overlap = data.draw(st.integers(0, tile // 2))
    calls = []
    def fn(t):
        calls.append(len(t))
        assert t.shape[1:] == (1, tile, tile)
        return t.repeat(1, k, 1, 1)
    out = tiled_apply(fn, torch.full((b, 1, h, w), c), tile, overlap, batch_size)
    assert out.shape == (b, k, h, w) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full_like(out, c), atol=2 * np.finfo(np.float32).eps * max(abs(c), 1e-30), rtol=0)
    assert max(calls) <= batch_size


# ------------------------------------------------------------------ samplers

class TinyNet(nn.Module):
    "A plain `(x, gamma) -> noise` module: one convolution, modulated by the noise level."
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(2, 1, 3, padding=1)
    def forward(self, x, gamma): return self.conv(x) * (1 + gamma.reshape(-1, 1, 1, 1))


@functools.cache
def diffusion(kind: str) -> GaussianDiffusion:
    torch.manual_seed(0)
    net = TinyNet() if kind == 'conv' else UNet(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[8],
                                                 res_blocks=1, dropout=0.1, image_size=16, use_cross_attn=True)
    return GaussianDiffusion(net, n_timestep=100, linear_end=2e-2).eval()


@SETTINGS
@given(kind=st.sampled_from(['unet', 'conv']), sampler=st.sampled_from(list(SAMPLERS)), steps=st.integers(1, 5),
       eta=st.sampled_from([0.0, 0.3, 1.0]), n_samples=st.integers(1, 2), b=st.integers(1, 2), seed=st.integers(0, 2**31 - 1))
def test_samplers_reproducible_from_their_generator(kind, sampler, steps, eta, n_samples, b, seed):
    "Same generator, same output, even though the global RNG differs between the calls (dropout is off in eval mode)."
    d = diffusion(kind)
    cond = torch.rand(b, 1, 16, 16, generator=torch.Generator().manual_seed(seed ^ 1)) * 2 - 1
    run = lambda global_seed: (torch.manual_seed(global_seed),
                               sample(d, cond, steps, sampler, eta, torch.Generator().manual_seed(seed), n_samples=n_samples))[1]
    x, y = run(seed + 1), run(seed + 2)
    for u, v in zip(*((x, y) if n_samples > 1 else ((x,), (y,)))):
        assert u.shape == cond.shape and torch.isfinite(u).all()
        assert torch.equal(u, v)


@pytest.mark.parametrize('sampler', SAMPLERS)
def test_samplers_use_the_generator(sampler):
    "The other half of reproducibility: another seed gives another sample (the generator is really used)."
    d = diffusion('unet')
    cond = torch.zeros(1, 1, 16, 16)
    a, b = (sample(d, cond, 3, sampler, 0.5, torch.Generator().manual_seed(s)) for s in (0, 1))
    assert not torch.equal(a, b)
