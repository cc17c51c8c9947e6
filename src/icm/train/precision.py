"""Which floating-point precision a training run uses, checked against the machine before any
model loads: a recipe written for one machine (the paper's ``precision: bf16`` on A100s) fails on
another with one line that says what to change, not a traceback from deep in the trainer."""

from __future__ import annotations

from dataclasses import dataclass

from icm.errors import InputError


class PrecisionError(InputError):
    """A precision the machine cannot train in."""


@dataclass(frozen=True)
class Accelerator:
    """What the machine offers for training."""

    cuda: bool  # a CUDA GPU
    bf16: bool  # bfloat16 training (CUDA Ampere or newer, or another accelerator the trainer accepts)

    @classmethod
    def detect(cls) -> Accelerator:
        import torch
        from transformers.utils import is_torch_bf16_gpu_available

        # The trainer's own test: on a CPU it refuses bf16 (emulated on most CPUs, slower than fp32).
        return cls(cuda=torch.cuda.is_available(), bf16=is_torch_bf16_gpu_available())


def resolve_precision(requested: str, accelerator: Accelerator | None = None) -> str:
    """``auto`` -> bf16 where the GPU has it, else fp32; an explicit bf16 or fp16 the machine
    cannot train in is a :class:`PrecisionError`."""
    machine = accelerator or Accelerator.detect()
    if requested == "auto":
        return "bf16" if machine.cuda and machine.bf16 else "fp32"
    if requested == "bf16" and not machine.bf16:
        where = "this GPU has no bfloat16 (it needs Ampere or newer)" if machine.cuda else "this machine has no GPU"
        raise PrecisionError(
            f"precision bf16 needs a GPU with bfloat16 and {where}; set precision: auto (fp32 here)"
            + (" or fp16" if machine.cuda else "")
        )
    if requested == "fp16" and not machine.cuda:
        raise PrecisionError(
            "precision fp16 needs a CUDA GPU and this machine has none; set precision: auto (fp32 here)"
        )
    return requested
