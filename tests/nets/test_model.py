"""The paper's autoencoder (§4.2): layer counts and shapes, tiny configs, divisibility errors."""

import pytest
import torch
from torch import nn

from blurlatent.config import ModelConfig
from blurlatent.nets.autoencoder import Autoencoder, build_autoencoder
from blurlatent.nets.multiscale import MultiScaleAutoencoder
from blurlatent.nets.tiling import receptive_radius

TINY_WIDTHS = [4, 8, 8]


def _layers(module, kind):
    return [m for m in module.modules() if type(m) is kind]


def test_paper_model_layers_and_shapes():
    model = Autoencoder().eval()
    convs = _layers(model.encoder, nn.Conv2d)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1024]
    assert all(c.kernel_size == (3, 3) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    assert len(_layers(model.encoder, nn.BatchNorm2d)) == 5 and len(_layers(model.encoder, nn.LeakyReLU)) == 5
    ups = _layers(model.decoder, nn.ConvTranspose2d)
    assert [(u.in_channels, u.out_channels) for u in ups] == [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 64)]
    assert all(u.stride == (2, 2) and u.output_padding == (1, 1) for u in ups)
    last = list(model.decoder.children())[-2:]
    assert isinstance(last[0], nn.Conv2d) and (last[0].in_channels, last[0].out_channels, last[0].kernel_size) == (
        64,
        1,
        (3, 3),
    )
    assert isinstance(last[1], nn.Sigmoid)
    # 5 layers down, 6 up (5 transposed convolutions + the output convolution)
    assert len(convs) == 5 and len(ups) + 1 == 6
    with torch.no_grad():
        z = model.encode(torch.rand(1, 1, 128, 128))
        assert z.shape == (1, 1024, 4, 4)
        y = model.decode(z)
    assert y.shape == (1, 1, 128, 128)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_tiny_model_fully_convolutional():
    model = Autoencoder(ModelConfig(widths=TINY_WIDTHS)).eval()
    assert model.multiple == 8
    with torch.no_grad():
        z = model.encode(torch.rand(2, 1, 32, 48))
        assert z.shape == (2, TINY_WIDTHS[-1], 4, 6)
        assert model.decode(z).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*depth = 8"):
        model.encode(torch.rand(1, 1, 30, 32))


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(widths=TINY_WIDTHS)).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_build_autoencoder_picks_the_arch():
    paper = build_autoencoder(ModelConfig(widths=[4, 8, 8], arch="paper"))
    assert type(paper) is Autoencoder and paper.multiple == 8 and paper.radius == receptive_radius(8) == 16
    ms = build_autoencoder(ModelConfig(arch="multiscale", widths=[4, 8, 8]))
    assert type(ms) is MultiScaleAutoencoder and ms.multiple == 4
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in ms.modules())  # resize + conv only
