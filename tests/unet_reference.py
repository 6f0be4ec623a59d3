"""A hand-written PyTorch U-Net, written from the papers and independently of the generator: the
reference tests/test_unet.py holds specs/unet.arch against.

`UNet(padded=False)` is Ronneberger et al. (2015): valid convs, up-convolutions, the encoder's map
centre-cropped to the decoder's.  `UNet(padded=True)` is the padded variant of milesial/Pytorch-UNet
(bilinear=True): same-padded convs with BN, bilinear upsampling, the upsampled map zero-padded to
the encoder's (half the difference before, the rest after)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def double_conv(cin: int, cout: int, padded: bool, mid: int | None = None) -> nn.Sequential:
    mid = mid or cout
    layers: list[nn.Module] = []
    for a, b in ((cin, mid), (mid, cout)):
        layers.append(nn.Conv2d(a, b, 3, padding=1 if padded else 0, bias=not padded))
        layers += [nn.BatchNorm2d(b), nn.ReLU()] if padded else [nn.ReLU()]
    return nn.Sequential(*layers)


class Up(nn.Module):
    def __init__(self, cin: int, cout: int, padded: bool):
        super().__init__()
        self.padded = padded
        if padded:  # upsample keeps cin channels; the skip brings cin more
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = double_conv(2 * cin, cout, True, mid=cin)
        else:  # the up-conv halves the channels; the skip brings them back
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = double_conv(cin, cout, False)

    def forward(self, x, skip):
        x = self.up(x)
        dh, dw = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        if self.padded:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        else:
            skip = skip[:, :, dh // 2:dh // 2 + x.shape[2], dw // 2:dw // 2 + x.shape[3]]
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, channels: int = 1, classes: int = 2, base: int = 64, padded: bool = False):
        super().__init__()
        w = [base, base * 2, base * 4, base * 8, base * 16]
        bottom = w[3] if padded else w[4]
        self.inc = double_conv(channels, w[0], padded)
        pairs = zip(w[:4], [*w[1:4], bottom], strict=True)
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), double_conv(a, b, padded)) for a, b in pairs)
        outs = [w[2], w[1], w[0], w[0]] if padded else [w[3], w[2], w[1], w[0]]
        self.ups = nn.ModuleList(Up(a, b, padded) for a, b in zip([bottom, *outs[:3]], outs, strict=True))
        self.outc = nn.Conv2d(w[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
