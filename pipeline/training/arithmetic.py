"""What training computes in: fp32, or bf16 / fp16 under autocast with fp32 weights.

On a GPU, `auto` trains in bf16 where the GPU has it (compute capability 8.0 and later) and in
fp16 elsewhere (a T4, a V100), with a loss scaler: fp16 gradients of a small loss underflow to
zero without one, and bf16 emulated on such a GPU is many times slower. On the CPU `auto` is
fp32 in NCHW, the arithmetic the shipped weights were trained in, so `make train` reproduces
them; bf16 on the CPU (where oneDNN runs it natively) is asked for explicitly and runs in
channels_last, 1.7x faster per step than fp32 NCHW on an AVX-512 EPYC, with other weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.learned import arithmetic_name, autocast_dtype, check_precision


@dataclass
class TrainingArithmetic:
    """The autocast dtype (None: fp32), the memory layout and the loss scaler of one training run."""

    device: str
    dtype: object | None = None  # torch.bfloat16, torch.float16 or None
    scaler: object = field(default=None, repr=False)  # torch.amp.GradScaler, enabled for fp16 only

    def __post_init__(self) -> None:
        import torch

        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.scaled)

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    @property
    def scaled(self) -> bool:
        """Whether the loss is scaled before backward: fp16 only (bf16 has fp32's range)."""
        import torch

        return self.dtype is torch.float16

    @property
    def name(self) -> str:
        """fp32, bf16 or fp16, for the checkpoint and the model card."""
        return arithmetic_name(self.dtype)

    @property
    def channels_last(self) -> bool:
        """On a GPU, or in reduced precision on the CPU; fp32 on the CPU stays NCHW, as the shipped weights trained."""
        return self.device_type == "cuda" or self.dtype is not None

    def forward(self, net, x):  # torch module and tensor -> logits
        """The network's logits of `x`, in this run's layout and under its autocast."""
        import torch

        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            return net(x)

    def step(self, loss, optimiser) -> None:
        """Backward and one optimiser step; with fp16, through the scaler (a step whose gradients
        overflowed is skipped and the scale lowered)."""
        optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimiser)
        self.scaler.update()

    def state(self) -> dict:
        """What a checkpoint keeps: the arithmetic, and the scaler's state so a resumed run scales as it left off."""
        return {"arithmetic": self.name, "scaler": self.scaler.state_dict() if self.scaled else {}}

    def restore(self, state: dict) -> None:
        """The scaler's state from a checkpoint of the same arithmetic (another arithmetic starts its own scale)."""
        if self.scaled and state.get("arithmetic") == self.name and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def training_arithmetic(device: str, precision: str = "auto") -> TrainingArithmetic:
    """The arithmetic to train in on `device` (cpu, cuda) for `precision` (auto, bf16, fp16, fp32), chosen
    as inference chooses it; a reduced precision the device cannot run natively is refused, naming the fix."""
    check_precision(device, precision)
    return TrainingArithmetic(device, autocast_dtype(device, precision))
