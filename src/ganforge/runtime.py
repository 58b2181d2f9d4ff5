"""How a training step runs on the hardware: precision, memory layout, compilation, TF32.

- `precision`: fp32, or autocast to bf16 or fp16 for the forward passes (losses in fp32). fp16 adds
  a GradScaler; its overflowed steps are the scaler's to skip, not the divergence guard's.
- `channels_last`: image models and batches in NHWC layout, which the CPU's and GPU's conv
  kernels prefer.
- `compile`: torch.compile of G and D. R1 needs a double backward, which compiled graphs do not
  support, so R1's pass through D runs D's eager forward.
- TF32 matmuls and convolutions on NVIDIA GPUs (`tf32`, on by default), as PyTorch recommends
  for training.
"""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Runtime:
    def __init__(self, precision: str, channels_last: bool, compile: bool, tf32: bool, device: torch.device):
        self.device, self.precision = device, precision
        self.channels_last, self.compile = channels_last, compile
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    def autocast(self):
        """The context for forward passes: autocast to the chosen precision, or nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def prepare(self, module: torch.nn.Module, images: bool) -> torch.nn.Module:
        """Put a model in the chosen layout and compile it (in place: state_dict keys stay)."""
        if self.channels_last and images:
            module.to(memory_format=torch.channels_last)
        if self.compile:
            module.compile()
        return module

    def batch(self, img: torch.Tensor) -> torch.Tensor:
        if self.channels_last and img.dim() == 4:
            return img.contiguous(memory_format=torch.channels_last)
        return img

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)  # skips the step when the scaled gradients overflowed
        else:
            optimizer.step()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients back in true units before they are checked (fp16 only)."""
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def update(self) -> None:
        if self.scaler:
            self.scaler.update()

    def grad_scale(self) -> float:
        """The factor R1's inner gradient is computed at (then divided by), as AMP's gradient
        penalty recipe does, so that fp16 does not underflow there."""
        return self.scaler.get_scale() if self.scaler else 1.0


def eager(module: torch.nn.Module):
    """The module's uncompiled forward (for R1's double backward); the module itself when not compiled."""
    return module._call_impl if getattr(module, "_compiled_call_impl", None) is not None else module
