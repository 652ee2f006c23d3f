"""DeviceInfo values for GPUs this machine does not have, so constraint and heuristic
functions (pure by design) are tested for them."""

from kernels.device import DeviceInfo

H100 = DeviceInfo(kind="cuda", name="NVIDIA H100 80GB HBM3", capability=(9, 0), smem_per_block=232448,
                  sm_count=132, total_memory=80 * 2**30, interpreter=False)
A100 = DeviceInfo(kind="cuda", name="NVIDIA A100-SXM4-80GB", capability=(8, 0), smem_per_block=166912,
                  sm_count=108, total_memory=80 * 2**30, interpreter=False)
L4 = DeviceInfo(kind="cuda", name="NVIDIA L4", capability=(8, 9), smem_per_block=101376,
                sm_count=58, total_memory=24 * 2**30, interpreter=False)
T4 = DeviceInfo(kind="cuda", name="Tesla T4", capability=(7, 5), smem_per_block=65536,
                sm_count=40, total_memory=16 * 2**30, interpreter=False)
CPU = DeviceInfo(kind="cpu", name="cpu", capability=None, smem_per_block=None,
                 sm_count=2, total_memory=24 * 2**30, interpreter=True)

ALL = (H100, A100, L4, T4, CPU)
