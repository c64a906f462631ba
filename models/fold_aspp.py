"""Fold-ASPP: atrous spatial pyramid pooling on folded features (Zhao et al., "Suppress and
Balance: A Simple Gated Network for Salient Object Detection", ECCV 2020, Sect. 3.3).

A *folded convolution* gathers every 2×2 stride-2 window into the channel axis ("Fold"), runs a
K×K dilated convolution on the half-resolution tensor, and scatters the channels back
("Unfold"), so each sampling point of the atrous kernel is a 2×2 patch instead of an isolated
pixel. Fold-ASPP runs three folded 3×3 convolutions with dilations 2, 4, 6 in parallel.

How the branches are merged. The paper's text only says the module "consists of three folded
convolutional layers with dilation rates [2, 4, 6]" (the merge is drawn in its Fig. 2, not
written). The authors' released code (``FoldConv_aspp`` in GateNet-RGB-Saliency) folds once,
runs the branches on the folded tensor (each Conv-BN-activation), **concatenates** them along
channels, fuses them with a **1×1 convolution** + BN + activation on the folded tensor, and
unfolds once; ASPP branches are never summed. Fold and unfold are channel permutations that
commute with concatenation and with pointwise activations, so that is exactly::

    y = relu(FoldConv1x1(concat(relu(FoldConv3x3_d2(x)), relu(FoldConv3x3_d4(x)),
                                relu(FoldConv3x3_d6(x)))))

— four folded convolutions, each Fold → Conv → BN → Unfold, which is what :class:`FoldASPP`
computes and what the fused kernel :func:`sdk.fold_conv.fold_conv2d` runs. Left out from the
authors' code, as the paper does not describe them: the extra 1×1 and image-pooling branches,
and the plain 3×3 / 1×1 convolutions before and after the module. Branch width: the authors use
half the folded width per branch (``branch_channels = out_channels // 2``), the default here.

Export. ``pixel_unshuffle`` exports as Reshape/Transpose/Reshape, because ONNX ``SpaceToDepth``
orders channels ``(bh·2 + bw)·C + c`` while PyTorch orders them ``c·4 + bh·2 + bw``. The module
therefore folds with :func:`space_to_depth` (ONNX's order; exported as ``SpaceToDepth``) and
keeps its convolution weights in that order, and unfolds with ``pixel_shuffle`` (exported as
``DepthToSpace`` mode ``"CRD"``, which matches it). The ONNX graph is ``SpaceToDepth → Conv →
DepthToSpace`` per folded convolution (BN folded into Conv by the exporter), plus Relu and
Concat. :meth:`FoldConv2d.to_native` converts a layer to the kernel's order
(:func:`sdk.fold_conv.weight_from_space_to_depth`) with BN folded, and :meth:`FoldASPP.to_native`
returns a NumPy-only :class:`sdk.fold_conv.FoldASPPHead` that runs the module on the native
kernels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdk.fold_conv import (FoldASPPHead, FoldConvLayer, pack_fold_weights, same_padding,
                           weight_from_space_to_depth)

__all__ = ["space_to_depth", "FoldConv2d", "FoldASPP"]


def _space_to_depth(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return (x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
            .reshape(n, 4 * c, h // 2, w // 2))


def _depth_to_space(y: torch.Tensor) -> torch.Tensor:
    n, c4, h, w = y.shape
    return (y.reshape(n, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2)
            .reshape(n, c4 // 4, 2 * h, 2 * w))


class _SpaceToDepth(torch.autograd.Function):
    """ONNX ``SpaceToDepth`` (blocksize 2) in PyTorch, exported as that single op."""

    @staticmethod
    def forward(ctx, x):
        return _space_to_depth(x)

    @staticmethod
    def backward(ctx, grad):
        return _depth_to_space(grad)

    @staticmethod
    def symbolic(g, x):
        return g.op("SpaceToDepth", x, blocksize_i=2)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """The 2×2 fold in ONNX ``SpaceToDepth`` order: ``(N, C, H, W)`` → ``(N, 4C, H/2, W/2)``,
    channel ``(bh·2 + bw)·C + c`` (PyTorch's ``pixel_unshuffle`` uses ``c·4 + bh·2 + bw``)."""
    if not torch.jit.is_tracing() and (x.shape[-1] % 2 or x.shape[-2] % 2):
        raise ValueError(f"x: H and W must be even (the 2x2 fold), received shape "
                         f"{tuple(x.shape)}")
    return _SpaceToDepth.apply(x)


# a leaf for torch.fx (its input check is Python control flow): quantization traces models with
# fx to fold batch norms, and a FoldASPP must stay traceable for that
torch.fx.wrap("space_to_depth")


class FoldConv2d(nn.Module):
    """Folded convolution: Fold → K×K dilated Conv → BN → Unfold.

    Input ``(N, in_channels, H, W)`` with H, W even; output ``(N, out_channels, H', W')``, the
    input size when ``padding="same"``. ``conv`` and ``bn`` act on the folded tensor
    (``4·in_channels`` → ``4·out_channels`` channels); ``conv.weight`` follows ONNX
    ``SpaceToDepth``'s input channel order. Dilation and padding are in folded pixels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 dilation: int = 1, padding="same"):
        super().__init__()
        if padding == "same":
            padding = same_padding(kernel_size, dilation)
        self.conv = nn.Conv2d(4 * in_channels, 4 * out_channels, kernel_size, padding=padding,
                              dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(4 * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.bn(self.conv(space_to_depth(x))), 2)

    def to_native(self, relu: bool = False) -> FoldConvLayer:
        """This layer (eval mode: BN folded into the weights) as a NumPy-only
        :class:`~sdk.fold_conv.FoldConvLayer`, optionally followed by ReLU."""
        bn = self.bn
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = self.conv.weight * scale[:, None, None, None]
            bias = bn.bias - bn.running_mean * scale
        weight = weight_from_space_to_depth(weight.detach().cpu().float().numpy())
        return FoldConvLayer(pack_fold_weights(weight, bias.detach().cpu().float().numpy()),
                             dilation=self.conv.dilation[0], padding=self.conv.padding[0],
                             relu=relu)


class FoldASPP(nn.Module):
    """Fold-ASPP: three folded 3×3 convolutions (dilations 2, 4, 6), each followed by ReLU,
    concatenated and fused by a folded 1×1 convolution and ReLU (see the module docstring).

    Args:
        in_channels, out_channels: channels of the input and the output.
        branch_channels: channels of each branch (default ``out_channels // 2``, at least 1).
        dilations: of the branches, in folded pixels.

    Input ``(N, in_channels, H, W)`` float32 with H and W even; output
    ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, branch_channels: int | None = None,
                 dilations: tuple[int, ...] = (2, 4, 6)):
        super().__init__()
        branch_channels = branch_channels or max(1, out_channels // 2)
        self.branches = nn.ModuleList(
            FoldConv2d(in_channels, branch_channels, 3, dilation=d) for d in dilations)
        self.fuse = FoldConv2d(len(dilations) * branch_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = torch.cat([F.relu(branch(x)) for branch in self.branches], dim=1)
        return F.relu(self.fuse(merged))

    def to_native(self) -> FoldASPPHead:
        """The module (eval mode) on the native fold_conv kernels: a NumPy-only callable,
        ``head(x)`` with ``x`` float32 ``(N, in_channels, H, W)``."""
        return FoldASPPHead(tuple(b.to_native(relu=True) for b in self.branches),
                            self.fuse.to_native(relu=True))
