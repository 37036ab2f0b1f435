"""GPU sizes: the common ones by name, plain sizes ("24GB"), or the one in this machine.

Sizes are the usable memory CUDA reports (``torch.cuda.get_device_properties().total_memory``),
which is a little under the marketing figure on some boards (an "80 GB" H100 SXM reports
79.2 GiB). A plain size such as ``24GB`` means 24 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ConfigError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Gpu:
    name: str
    total_bytes: int
    bf16: bool = True          # pre-Ampere cards train in fp16 instead
    detected: bool = False
    cpu: bool = False          # this machine's CPU and RAM: no GPU, so the run trains there


# name → (MiB as nvidia-smi / CUDA report it, supports bf16)
_KNOWN = {
    "T4": (15360, False),
    "V100-16GB": (16384, False),
    "V100-32GB": (32768, False),
    "RTX 3060": (12288, True),
    "RTX 3080": (10240, True),
    "RTX 3090": (24576, True),
    "RTX 4060 Ti": (16380, True),
    "RTX 4070": (12282, True),
    "RTX 4080": (16376, True),
    "RTX 4090": (24564, True),
    "RTX 5090": (32607, True),
    "A10": (23028, True),
    "A10G": (23028, True),
    "L4": (23034, True),
    "A40": (46068, True),
    "L40S": (46068, True),
    "RTX A6000": (49140, True),
    "RTX 6000 Ada": (49140, True),
    "A100-40GB": (40960, True),
    "A100-80GB": (81920, True),
    "H100": (81559, True),
    "H100-80GB": (81559, True),
    "H200": (143771, True),
}
_ALIASES = {"A6000": "RTX A6000", "A100": None, "V100": None}   # None: ambiguous, ask for the size
SIZES_GB = (8, 12, 16, 24, 40, 48, 80, 141)


def _norm(s: str) -> str:
    return "".join(ch for ch in s.upper() if ch.isalnum())


def choices() -> list[str]:
    return [f"{g}GB" for g in SIZES_GB] + list(_KNOWN)


def this_cpu() -> Gpu:
    """This machine's CPU, judged against its RAM (where a run without a GPU trains)."""
    import psutil

    total = int(psutil.virtual_memory().total)
    return Gpu(f"this machine's CPU and {total / GiB:.0f} GiB of RAM", total, bf16=False, detected=True, cpu=True)


def parse_gpu(name: str) -> Gpu:
    """``"24GB"``, ``"24"``, ``"24 GiB"``, ``"A100-80GB"``, ``"h100"``, ``"RTX 4090"`` → Gpu;
    ``"cpu"``: this machine's CPU and RAM."""
    raw = str(name).strip()
    if not raw:
        raise ConfigError("gpu", "is empty", raw, choices=choices())
    key = _norm(raw)
    if key == "CPU":
        return this_cpu()
    for known, (mib, bf16) in _KNOWN.items():
        if _norm(known) == key:
            return Gpu(known, mib * MiB, bf16)
    for alias, target in _ALIASES.items():
        if _norm(alias) == key:
            if target is None:
                options = [k for k in _KNOWN if _norm(k).startswith(key)]
                raise ConfigError("gpu", f"{raw} comes in several sizes; say which", raw, choices=options)
            mib, bf16 = _KNOWN[target]
            return Gpu(target, mib * MiB, bf16)
    number = key.removesuffix("GIB").removesuffix("GB").removesuffix("G")
    try:
        gb = float(number)
    except ValueError:
        raise ConfigError("gpu", "unknown GPU; give a size like 24GB or one of the names", raw,
                          choices=choices()) from None
    if not 0 < gb <= 4096:
        raise ConfigError("gpu", "a GPU size must be between 0 and 4096 GB", raw)
    label = f"{gb:g}GB"
    return Gpu(label, int(gb * GiB), True)


def detect_gpu() -> Gpu | None:
    """The current CUDA device, or None without one (never initialises CUDA needlessly)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return Gpu(props.name, int(props.total_memory), bool(torch.cuda.is_bf16_supported()), detected=True)
    except Exception:
        return None
