"""Network layers a preset names (``timm_kwargs``) that timm does not have. Imported only when
such a model is built (it imports torch)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pathopipe.errors import ConfigError


class CTransPathStem(nn.Module):
    """CTransPath's convolutional patch embedding, in place of a Swin transformer's 4 x 4
    patchify: two 3 x 3 stride-2 convolution + batch-norm + ReLU steps (to embed_dim / 8, then
    embed_dim / 4 channels), a 1 x 1 convolution to embed_dim, then the norm. Parameters are
    named as in the published checkpoint (``proj.0``, ``proj.1``, ``proj.3``, ``proj.4``,
    ``proj.6``, ``norm``); the output is NHWC, as timm's Swin takes it."""

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: Any = None,
        output_fmt: str = "NHWC",
        **_: Any,  # timm's other patch-embedding arguments (strict_img_size, device, dtype)
    ) -> None:
        super().__init__()
        if patch_size not in (4, (4, 4)) or embed_dim % 8:
            raise ConfigError(f"CTransPath's stem needs patch_size 4 and embed_dim divisible by 8, not "
                              f"{patch_size} and {embed_dim}")  # fmt: skip
        size = img_size if isinstance(img_size, tuple) else (img_size, img_size)
        self.img_size, self.patch_size = size, (4, 4)
        self.grid_size = (size[0] // 4, size[1] // 4)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.output_fmt = output_fmt
        layers: list[nn.Module] = []
        channels_in, channels_out = in_chans, embed_dim // 8
        for _step in range(2):
            layers += [nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True)]  # fmt: skip
            channels_in, channels_out = channels_out, channels_out * 2
        layers.append(nn.Conv2d(channels_in, embed_dim, kernel_size=1))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        x = x.permute(0, 2, 3, 1) if self.output_fmt == "NHWC" else x.flatten(2).transpose(1, 2)
        return self.norm(x)
