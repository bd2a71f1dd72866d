"""Post-training 8-bit quantisation of an ANN: the fair rival of an accumulate-only spiking student.

:func:`quantize_int8` returns a copy of a network that computes what an INT8 inference engine computes:
weights as signed 8-bit integers with one scale per output channel (symmetric), every layer's input as
unsigned 8-bit integers with one scale per layer calibrated on a few images (the inputs are non-negative:
pixels in [0, 1] and ReLU outputs), biases at the accumulator's scale. It runs in floating point with the
values rounded to those grids at the same points (PyTorch's ``fake_quantize_*`` operators), which is the
integer network's arithmetic up to float rounding in the accumulation.

Calibrate on images the evaluation does not score (the validation split); the quantised copy's test
accuracy is then a measurement, as for any other model of the study.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

INT8_MAX = 127  # signed 8-bit weights: [-127, 127], symmetric
UINT8_MAX = 255  # unsigned 8-bit activations: [0, 255]


def _weighted(model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    others = [type(m).__name__ for m in model.modules()
              if not isinstance(m, nn.Linear | nn.Conv2d) and any(True for _ in m.parameters(recurse=False))]
    if others:
        raise ValueError(f"quantize_int8 handles nn.Linear and nn.Conv2d layers; the model also has {others}")
    if not layers:
        raise ValueError("the model has no nn.Linear or nn.Conv2d layer to quantise")
    return layers


@torch.no_grad()
def observe(model: nn.Module, layers: Sequence[nn.Module], images: Tensor, hook: Callable[..., object], *,
            pre: bool = False, batch_size: int = 1000) -> None:
    """Run ``model`` over ``images`` in chunks of ``batch_size``, in evaluation mode (its mode is restored
    afterwards), with ``hook`` on each of ``layers``: a forward hook ``hook(layer, args, output)``, or with
    ``pre`` a forward pre-hook ``hook(layer, args)``. The hooks are removed whatever happens."""
    register = (lambda m: m.register_forward_pre_hook(hook)) if pre else (lambda m: m.register_forward_hook(hook))
    handles = [register(layer) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def input_ranges(model: nn.Module, images: Tensor, batch_size: int = 1000) -> dict[nn.Module, float]:
    """The largest input value of every weighted layer of ``model`` over ``images`` (in evaluation mode).

    Raises ``ValueError`` if some layer's input is negative: unsigned 8-bit activations cannot hold it."""
    layers, high, low = _weighted(model), {}, {}

    def record(layer: nn.Module, args: tuple[Tensor, ...]) -> None:
        high[layer] = max(high.get(layer, 0.0), float(args[0].max()))
        low[layer] = min(low.get(layer, 0.0), float(args[0].min()))

    observe(model, layers, images, record, pre=True, batch_size=batch_size)
    negative = [type(layer).__name__ for layer in layers if low[layer] < 0]
    if negative:
        raise ValueError(f"layers {negative} receive negative inputs; unsigned 8-bit activations need inputs >= 0")
    return high


def _fake_quantize_input(scale: float):  # noqa: ANN202 (a forward pre-hook)
    def hook(_: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (torch.fake_quantize_per_tensor_affine(args[0], scale, 0, 0, UINT8_MAX), *args[1:])
    return hook


@torch.no_grad()
def quantize_int8(model: nn.Module, calibration: Tensor, batch_size: int = 1000) -> nn.Module:
    """A copy of ``model`` (in evaluation mode) with 8-bit weights and activations, calibrated on
    ``calibration`` images. ``model`` itself is left as it was."""
    if len(calibration) == 0:
        raise ValueError("quantize_int8 needs at least one calibration image")
    quantized = copy.deepcopy(model).eval()
    for layer, high in input_ranges(quantized, calibration, batch_size).items():
        input_scale = max(high, torch.finfo(torch.float32).tiny) / UINT8_MAX
        w = layer.weight
        scales = w.abs().amax(dim=tuple(range(1, w.dim()))).clamp_min(torch.finfo(torch.float32).tiny) / INT8_MAX
        zeros = torch.zeros(len(scales), dtype=torch.int32)
        w.copy_(torch.fake_quantize_per_channel_affine(w, scales, zeros, 0, -INT8_MAX, INT8_MAX))
        if layer.bias is not None:  # 32-bit integers at the accumulator's scale (weight scale × input scale)
            step = scales * input_scale
            layer.bias.copy_(torch.round(layer.bias / step) * step)
        layer.register_forward_pre_hook(_fake_quantize_input(input_scale))
    return quantized
