"sr3xct.diffusion with the real UNet and loss: checkpoints carry no schedule, autocast sampling, errors."
import pytest
import torch
from sr3xct.errors import InputError
from sr3xct.unet import UNet
from sr3xct.losses import SR3XCTLoss
from sr3xct.diffusion import GaussianDiffusion, ImportanceSampler, sample


def tiny(**kw):
    torch.manual_seed(0)
    net = UNet(in_channel=2, out_channel=1, inner_channel=8, norm_groups=4, channel_mults=(1, 2), attn_res=(8,),
               res_blocks=1, dropout=0, image_size=16, use_cross_attn=True)
    return GaussianDiffusion(net, **kw)


def test_checkpoint_has_no_schedule_and_buffers_are_rebuilt():
    d = tiny()
    sd = d.state_dict()
    assert not any(k in sd for k in ('betas', 'alpha_bar', 'sqrt_alpha_bar', 'sqrt_alpha_bar_prev'))
    d2 = tiny(schedule='cosine', n_timestep=1000)
    d2.load_state_dict(sd)                               # the weights load; the cosine schedule stays
    assert d2.n_timestep == 1000 and torch.allclose(d2.alpha_bar.double(), d2.alpha_bar64.float().double())
    assert not torch.allclose(d2.alpha_bar[:1000], d.alpha_bar[:1000])


def test_p_losses_backward_with_importance_sampler():
    d = tiny(timestep_sampler=ImportanceSampler(2000, n_buckets=2, history=1))
    hr = torch.rand(4, 1, 16, 16) * 2 - 1
    cond = hr.clone()
    loss, parts = d.p_losses(hr, cond, SR3XCTLoss(w_perceptual=0), torch.Generator().manual_seed(0))
    loss.backward()
    assert {'l1', 'ssim', 'multiscale', 'total'} <= set(parts) and torch.isfinite(loss)
    assert all(p.grad is not None for p in d.model.parameters() if p.requires_grad)
    assert d.timestep_sampler.counts.sum() in (1, 2)      # 4 losses into 2 buckets of history 1


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm', 'dpm++2m'])
def test_sample_bf16_autocast_close_to_fp32(sampler):
    d = tiny().eval()
    cond = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ref = sample(d, cond, 8, sampler, generator=torch.Generator().manual_seed(0))
    with torch.autocast('cpu', torch.bfloat16):
        out = sample(d, cond, 8, sampler, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == cond.shape
    assert (out - ref).abs().mean() < 0.05


def test_bad_arguments():
    d = tiny()
    cond = torch.zeros(1, 1, 16, 16)
    for kw, msg in [(dict(steps=0), 'steps'), (dict(steps=2001), 'steps'), (dict(sampler='euler'), 'sampler'),
                    (dict(eta=-1), 'eta'), (dict(n_samples=0), 'n_samples'), (dict(spacing='cubic'), 'spacing')]:
        with pytest.raises(InputError, match=msg): sample(d, cond, **{'steps': 4, **kw})
    with pytest.raises(InputError, match='schedule'): tiny(schedule='sigmoid')
    with pytest.raises(InputError, match='n_buckets'): ImportanceSampler(10, n_buckets=20)
