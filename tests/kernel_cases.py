"""Problems the generic kernel tests run, per registered kernel.

SHAPES: problems checked with the heuristic default config (odd sizes 1, 13, 257 included).
SWEEP: one problem per kernel, large enough that every candidate block size is valid, on
which a covering sample of >= 10 configs is checked.
LAYOUTS: one small problem per kernel, at odd sizes, on which every tensor input (and the
output buffer) is passed in non-contiguous layouts (tests/layouts.py).
A kernel in the registry without entries here fails test_every_kernel_has_cases.
"""

SHAPES = {
    "matmul": [
        ({"M": 1, "N": 257, "K": 13}, {}),
        ({"M": 13, "N": 257, "K": 129}, {"bias": "1"}),
        ({"M": 257, "N": 13, "K": 257}, {}),
        ({"M": 64, "N": 64, "K": 64}, {}),
    ],
    "matmul_w8a16": [
        ({"M": 1, "N": 257, "K": 13}, {}),
        ({"M": 13, "N": 257, "K": 129}, {"bias": "1"}),
        ({"M": 257, "N": 13, "K": 257}, {}),
    ],
    "matmul_w4a16": [
        ({"M": 1, "N": 257, "K": 13}, {"quant": "int4-g32"}),
        ({"M": 13, "N": 257, "K": 129}, {"quant": "int4-g64-asym"}),
        ({"M": 257, "N": 13, "K": 257}, {"quant": "int4-g128"}),
        ({"M": 16, "N": 64, "K": 256}, {"quant": "int4-g128-asym"}),
    ],
    "matmul_fp8": [
        ({"M": 1, "N": 257, "K": 13}, {"quant": "fp8-row"}),
        ({"M": 13, "N": 257, "K": 129}, {"quant": "fp8-tensor"}),
        ({"M": 257, "N": 13, "K": 257}, {}),
    ],
    "rmsnorm": [
        ({"M": 1, "N": 257}, {}),
        ({"M": 13, "N": 1000}, {}),
        ({"M": 257, "N": 13}, {}),
        ({"M": 4, "N": 4096}, {}),
    ],
    "add_rmsnorm": [
        ({"M": 1, "N": 257}, {}),
        ({"M": 13, "N": 1000}, {}),
        ({"M": 257, "N": 13}, {}),
        ({"M": 4, "N": 4096}, {}),
    ],
    "layernorm": [
        ({"M": 1, "N": 257}, {}),
        ({"M": 13, "N": 384}, {}),
        ({"M": 257, "N": 13}, {}),
        ({"M": 4, "N": 4096}, {}),
    ],
    "rope": [
        ({"T": 1, "H": 1, "D": 64}, {}),
        ({"T": 13, "H": 9, "D": 64}, {}),
        ({"T": 257, "H": 3, "D": 32}, {}),
        ({"T": 5, "H": 32, "D": 128}, {}),
    ],
    "rope_kv": [
        ({"T": 1, "H": 1, "HKV": 1, "D": 64}, {}),
        ({"T": 13, "H": 9, "HKV": 3, "D": 64}, {}),
        ({"T": 257, "H": 4, "HKV": 2, "D": 32}, {}),
        ({"T": 5, "H": 32, "HKV": 8, "D": 128}, {}),
    ],
    "swiglu": [
        ({"M": 1, "N": 257}, {}),
        ({"M": 13, "N": 1536}, {}),
        ({"M": 257, "N": 13}, {}),
    ],
    "gelu": [
        ({"M": 1, "N": 257}, {}),
        ({"M": 13, "N": 1536}, {"approximate": "tanh"}),
        ({"M": 257, "N": 13}, {}),
    ],
    "attention": [
        ({"B": 1, "H": 1, "HKV": 1, "S": 1, "D": 64}, {}),
        ({"B": 2, "H": 9, "HKV": 3, "S": 13, "D": 64}, {"causal": "1", "varlen": "1"}),
        ({"B": 1, "H": 4, "HKV": 2, "S": 257, "D": 32}, {"causal": "0"}),
        ({"B": 3, "H": 12, "HKV": 12, "S": 40, "D": 32}, {"causal": "0", "varlen": "1"}),
    ],
    "attention_decode": [
        ({"B": 1, "H": 1, "HKV": 1, "L": 1, "D": 64}, {}),
        ({"B": 3, "H": 9, "HKV": 3, "L": 257, "D": 64}, {}),
        ({"B": 2, "H": 8, "HKV": 2, "L": 13, "D": 128}, {}),
        ({"B": 4, "H": 4, "HKV": 4, "L": 100, "D": 32}, {}),
    ],
}

SWEEP = {
    "matmul": ({"M": 257, "N": 257, "K": 257}, {}),
    "matmul_w8a16": ({"M": 129, "N": 129, "K": 257}, {}),
    "matmul_w4a16": ({"M": 129, "N": 129, "K": 257}, {"quant": "int4-g128"}),
    "matmul_fp8": ({"M": 257, "N": 257, "K": 513}, {}),
    "rmsnorm": ({"M": 19, "N": 4097}, {}),
    "add_rmsnorm": ({"M": 19, "N": 4097}, {}),
    "layernorm": ({"M": 19, "N": 4097}, {}),
    "rope": ({"T": 19, "H": 33, "D": 64}, {}),
    "rope_kv": ({"T": 19, "H": 36, "HKV": 12, "D": 64}, {}),
    "swiglu": ({"M": 19, "N": 4097}, {}),
    "gelu": ({"M": 19, "N": 4097}, {"approximate": "tanh"}),
    "attention": ({"B": 1, "H": 2, "HKV": 1, "S": 257, "D": 64}, {"causal": "1"}),
    "attention_decode": ({"B": 2, "H": 4, "HKV": 2, "L": 1025, "D": 64}, {}),
}

LAYOUTS = {
    "matmul": ({"M": 13, "N": 37, "K": 29}, {"bias": "1"}),
    "matmul_w8a16": ({"M": 13, "N": 37, "K": 29}, {"bias": "1"}),
    "matmul_w4a16": ({"M": 13, "N": 37, "K": 61}, {"quant": "int4-g32-asym", "bias": "1"}),
    "matmul_fp8": ({"M": 13, "N": 37, "K": 61}, {"quant": "fp8-row", "bias": "1"}),
    "rmsnorm": ({"M": 13, "N": 37}, {}),
    "add_rmsnorm": ({"M": 13, "N": 37}, {}),
    "layernorm": ({"M": 13, "N": 37}, {}),
    "rope": ({"T": 13, "H": 3, "D": 14}, {}),
    "rope_kv": ({"T": 13, "H": 3, "HKV": 1, "D": 14}, {}),
    "swiglu": ({"M": 13, "N": 37}, {}),
    "gelu": ({"M": 13, "N": 37}, {}),
    "attention": ({"B": 3, "H": 4, "HKV": 2, "S": 13, "D": 24}, {"causal": "1", "varlen": "1"}),
    "attention_decode": ({"B": 3, "H": 4, "HKV": 2, "L": 37, "D": 24}, {}),
}
