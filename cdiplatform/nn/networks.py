"""The two network families: CDI NN (2D, 2018) and 3D-CDI-NN (3D, 2021).

Both map a batch of normalized diffraction magnitudes, shape ``(B, 1, *grid)``,
to two sigmoid maps of the same shape: the normalized amplitude and the phase
channel ``p`` in ``[0, 1]`` (radians through the config's phase mapping).

Encoder level: ``convs_per_level`` x (3x3(x3) conv[, batch norm], ReLU or
leaky ReLU[, dropout]) then 2x max pooling. Decoder level (mirrored, widths
reversed): the same convolutions then 2x nearest upsampling. A final one-channel conv
with a sigmoid gives the output. There are no skip connections. With
``input_scaling = "log"`` the input is compressed logarithmically first (no weights).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cdiplatform.nn.config import ModelConfig

__all__ = ["CDINN2D", "CDINN3D", "CDINetwork", "build_model"]


def _conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _pool(ndim: int):
    return nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2)


def _convs(config: ModelConfig, c_in: int, c_out: int) -> list[nn.Module]:
    """``convs_per_level`` x (conv[, batch norm], activation[, dropout])."""
    ndim = config.ndim
    layers: list[nn.Module] = []
    for i in range(config.convs_per_level):
        layers.append(_conv(ndim)(c_in if i == 0 else c_out, c_out, 3, padding=1))
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(c_out) if ndim == 2 else nn.BatchNorm3d(c_out))
        layers.append(nn.ReLU(inplace=True) if config.activation == "relu" else nn.LeakyReLU(0.01, inplace=True))
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
    return layers


def make_encoder(config: ModelConfig) -> nn.Sequential:
    """Input dropout, then one level per width: convolutions, 2x max pooling."""
    layers: list[nn.Module] = [nn.Dropout(config.dropout)] if config.dropout > 0 else []
    c_in = 1
    for w in config.widths:
        layers += _convs(config, c_in, w)
        layers.append(_pool(config.ndim))
        c_in = w
    return nn.Sequential(*layers)


def make_decoder(config: ModelConfig) -> nn.Sequential:
    """Mirror of :func:`make_encoder`: convolutions then 2x upsampling per level, last conv + sigmoid."""
    layers: list[nn.Module] = []
    c_in = config.widths[-1]
    for w in reversed(config.widths):
        layers += _convs(config, c_in, w)
        layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        c_in = w
    layers += [_conv(config.ndim)(c_in, 1, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers)


class CDINetwork(nn.Module):
    """Common interface: ``forward(x) -> (amplitude, p)``, each ``(B, 1, *grid)``.

    Attributes
    ----------
    config : ModelConfig
        The configuration the network was built from.
    groups : dict of str to nn.Module
        Named module groups that a training schedule freezes or trains.
    """

    config: ModelConfig

    @property
    def groups(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input's shape and apply the config's fixed ``input_scaling``."""
        want = (1, *self.config.grid)
        if x.ndim != self.config.ndim + 2 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.config.arch} expects input of shape (B, {', '.join(map(str, want))}), "
                f"got {tuple(x.shape)}"
            )
        if self.config.input_scaling == "log":
            floor = self.config.input_floor
            return torch.log1p(x.clamp(min=0) / floor) / math.log1p(1.0 / floor)
        return x


class CDINN2D(CDINetwork):
    """CDI NN (Cherukara et al. 2018): two independent encoder-decoders, shape (sCDI NN), phase (pCDI NN)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "cdi_nn_2d":
            raise ValueError(f"CDINN2D needs arch 'cdi_nn_2d', got {config.arch!r}")
        self.config = config
        self.shape_net = nn.Sequential(make_encoder(config), make_decoder(config))
        self.phase_net = nn.Sequential(make_encoder(config), make_decoder(config))

    @property
    def groups(self) -> dict[str, nn.Module]:
        return {"shape_net": self.shape_net, "phase_net": self.phase_net}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._prepare(x)
        return self.shape_net(x), self.phase_net(x)


class CDINN3D(CDINetwork):
    """3D-CDI-NN (Chan et al. 2021): one shared encoder, a shape decoder and a phase decoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.arch != "cdi_nn_3d":
            raise ValueError(f"CDINN3D needs arch 'cdi_nn_3d', got {config.arch!r}")
        self.config = config
        self.encoder = make_encoder(config)
        self.shape_decoder = make_decoder(config)
        self.phase_decoder = make_decoder(config)

    @property
    def groups(self) -> dict[str, nn.Module]:
        return {
            "encoder": self.encoder,
            "shape_decoder": self.shape_decoder,
            "phase_decoder": self.phase_decoder,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(self._prepare(x))
        return self.shape_decoder(code), self.phase_decoder(code)


def build_model(config: ModelConfig | dict[str, Any], *, seed: int | None = None) -> CDINetwork:
    """Build the network a config describes.

    Parameters
    ----------
    config : ModelConfig or dict
        A config or its :meth:`ModelConfig.to_dict` form.
    seed : int, optional
        Seeds the weight initialization with a private generator (the global
        torch RNG is left untouched); default: the config's training seed if
        any, else the global RNG.
    """
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    cls = {"cdi_nn_2d": CDINN2D, "cdi_nn_3d": CDINN3D}[config.arch]
    if seed is None and config.training is not None:
        seed = config.training.seed
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)
