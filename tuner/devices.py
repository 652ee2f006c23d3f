"""Known NVIDIA GPUs as `kernels.device.DeviceInfo` values, so that records can be transferred
to (and constraints checked for) a GPU this machine does not have, and so that a renamed or
OEM card is recognised by its numbers rather than its marketing name.

Figures per GPU: compute capability, opt-in shared memory per block (bytes), SM count and
total memory (bytes) as `torch.cuda.get_device_properties` reports them. Sources:
- compute capability and opt-in shared memory: the CUDA C++ Programming Guide, "Compute
  Capabilities" table (9.0: 227 KiB, 8.0: 163 KiB, 8.6 and 8.9: 99 KiB per block);
- SM counts: NVIDIA's architecture whitepapers (H100: 132 SXM / 114 PCIe; A100: 108;
  AD102: L40S 142, RTX 4090 128; AD104 L4: 58; GA102 A10: 72);
- memory: `_CudaDeviceProperties(..., total_memory=NMB)` printed by torch in public logs
  (H100 SXM 81090, H100 PCIe 81008, A100-SXM4-80GB 81920, A100-SXM4-40GB 40536 (paddle's
  copy of the same struct), L40S 45589, RTX 4090 24563 MiB), nvidia-smi totals where no torch
  line was found (A10 23028, L4 23034 MiB; nvidia-smi reads ~0.5% above torch), H100 NVL
  99456909312 bytes, and this project's H200 run (bench/results/2026-11-28-nvidia-h200:
  150109880320 bytes). Matching allows 2% on memory, which covers driver and ECC differences.
"""

from __future__ import annotations

from dataclasses import dataclass

from kernels.device import DeviceInfo

from .keys import normalize_device_name

MEMORY_TOLERANCE = 0.02   # device matching by numbers: memory within 2%
_MIB = 2**20
_KIB = 1024


@dataclass(frozen=True)
class KnownDevice:
    """One GPU of the table: its DeviceInfo (name as torch reports it), the normalized name
    records carry, and other spellings that mean the same card."""

    info: DeviceInfo
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The normalized name ("nvidia-h100-80gb-hbm3"), as tuning records store it."""
        return normalize_device_name(self.info.name)

    @property
    def capability(self) -> str:
        major, minor = self.info.capability or (0, 0)
        return f"{major}.{minor}"


def _gpu(name: str, cap: tuple[int, int], smem_kib: int, sms: int, memory: int, *aliases: str) -> KnownDevice:
    info = DeviceInfo(kind="cuda", name=name, capability=cap, smem_per_block=smem_kib * _KIB, sm_count=sms,
                      total_memory=memory, interpreter=False)
    return KnownDevice(info, tuple(normalize_device_name(a) for a in aliases))


KNOWN_DEVICES: tuple[KnownDevice, ...] = (
    _gpu("NVIDIA H100 80GB HBM3", (9, 0), 227, 132, 81090 * _MIB, "h100", "h100-sxm", "h100-sxm5", "nvidia-h100-sxm"),
    _gpu("NVIDIA H100 PCIe", (9, 0), 227, 114, 81008 * _MIB, "h100-pcie"),
    _gpu("NVIDIA H100 NVL", (9, 0), 227, 132, 99456909312, "h100-nvl"),
    _gpu("NVIDIA H200", (9, 0), 227, 132, 150109880320, "h200", "h200-sxm", "nvidia-h200-sxm", "nvidia-h200-141gb"),
    _gpu("NVIDIA A100-SXM4-40GB", (8, 0), 163, 108, 40536 * _MIB, "a100-40gb", "a100-sxm4-40gb"),
    _gpu("NVIDIA A100-PCIE-40GB", (8, 0), 163, 108, 40536 * _MIB, "a100-pcie-40gb", "a100-40gb-pcie"),
    _gpu("NVIDIA A100-SXM4-80GB", (8, 0), 163, 108, 81920 * _MIB, "a100", "a100-80gb", "a100-sxm4-80gb"),
    _gpu("NVIDIA A100 80GB PCIe", (8, 0), 163, 108, 81920 * _MIB, "a100-80gb-pcie", "a100-pcie-80gb"),
    _gpu("NVIDIA L40S", (8, 9), 99, 142, 45589 * _MIB, "l40s"),
    _gpu("NVIDIA L4", (8, 9), 99, 58, 23034 * _MIB, "l4"),
    _gpu("NVIDIA A10", (8, 6), 99, 72, 23028 * _MIB, "a10"),
    _gpu("NVIDIA GeForce RTX 4090", (8, 9), 99, 128, 24563 * _MIB, "rtx-4090", "rtx4090", "4090"),
)


def known_names() -> list[str]:
    """The normalized names of the table, in table order."""
    return [d.name for d in KNOWN_DEVICES]


def _tokens(name: str) -> set[str]:
    return set(normalize_device_name(name).split("-"))


def _by_tokens(tokens: set[str]) -> KnownDevice | None:
    """The card a name's words name, whatever the vendor put around them ("HPE NVIDIA H100
    PCIe 80GB OEM" is the H100 PCIe). None when the words name none or are ambiguous."""
    def one(name: str) -> KnownDevice:
        return next(d for d in KNOWN_DEVICES if d.name == name)

    if "h200" in tokens:
        return one("nvidia-h200")
    if "h100" in tokens:
        if "nvl" in tokens:
            return one("nvidia-h100-nvl")
        return one("nvidia-h100-pcie" if "pcie" in tokens else "nvidia-h100-80gb-hbm3")
    if "a100" in tokens:
        if "pcie" in tokens:
            return one("nvidia-a100-pcie-40gb" if "40gb" in tokens else "nvidia-a100-80gb-pcie")
        return one("nvidia-a100-sxm4-40gb" if "40gb" in tokens else "nvidia-a100-sxm4-80gb")
    if "l40s" in tokens:
        return one("nvidia-l40s")
    if "4090" in tokens or "rtx4090" in tokens:
        return one("nvidia-geforce-rtx-4090")
    if "l4" in tokens:
        return one("nvidia-l4")
    if "a10" in tokens:
        return one("nvidia-a10")
    return None


def device_for(name: str) -> KnownDevice | None:
    """The known GPU `name` means: its normalized name or an alias ("h100", "nvidia-h200",
    "NVIDIA_H100_80GB_HBM3"), else the card its words name inside an OEM or renamed spelling
    ("Dell NVIDIA H100 80GB HBM3 OEM"). None for a name the table does not know."""
    normal = normalize_device_name(name)
    for d in KNOWN_DEVICES:
        if normal == d.name or normal in d.aliases:
            return d
    return _by_tokens(_tokens(name))


def memory_matches(a: int, b: int, tolerance: float = MEMORY_TOLERANCE) -> bool:
    """True when two total-memory figures are within `tolerance` of the larger."""
    return a > 0 and b > 0 and abs(a - b) <= tolerance * max(a, b)


def matches_by_numbers(device: DeviceInfo) -> list[KnownDevice]:
    """The known GPUs with `device`'s compute capability and SM count and its memory within
    2%: what a renamed card (a cloud's "NVIDIA H100-XYZ", an OEM part number) is. Several
    when the numbers do not tell variants apart (A100 SXM4 and PCIe of one memory size have
    the same constraints, so either serves; H100 SXM and NVL differ in memory)."""
    if device.kind != "cuda" or device.capability is None:
        return []
    return [d for d in KNOWN_DEVICES if d.info.capability == device.capability
            and d.info.sm_count == device.sm_count and memory_matches(d.info.total_memory, device.total_memory)]


def identify(device: DeviceInfo) -> tuple[KnownDevice | None, str]:
    """Which known GPU `device` is, and how that was decided: by its name (or an alias, or
    the words in an OEM name, provided the compute capability agrees), else by its numbers.
    Returns (None, why) when neither finds it."""
    if device.kind != "cuda" or device.capability is None:
        return None, f"{device.label} is not a CUDA GPU"
    found = device_for(device.name)
    if found is not None and found.info.capability == device.capability:
        how = "by name" if normalize_device_name(device.name) in (found.name, *found.aliases) else \
            f"by the words of its name {device.name!r}"
        return found, f"{how} as {found.name}"
    by_numbers = matches_by_numbers(device)
    if by_numbers:
        d = by_numbers[0]
        return d, (f"by compute capability {d.capability}, {d.info.sm_count} SMs, "
                   f"{device.total_memory / 2**30:.0f} GiB as {d.name}")
    return None, (f"{device.name} (sm_{device.capability[0]}{device.capability[1]}, {device.sm_count} SMs, "
                  f"{device.total_memory / 2**30:.0f} GiB) matches no known GPU")
