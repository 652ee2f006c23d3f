"""A tiny PTX interpreter for the inline assembly of our kernels: runs its text on the CPU.

The interpreter cannot run `tl.inline_asm_elementwise`, and this machine has no GPU, so the
PTX strings themselves are checked here: each supported instruction is emulated as the PTX
ISA defines it (b32 registers, immediates in hex or decimal), and a test runs the string
over every input it can see. Only what our assembly uses is supported; anything else
raises, so a new instruction cannot be skipped silently. A development aid for tests.
"""

from __future__ import annotations

import re

MASK32 = 0xFFFFFFFF


def prmt(a: int, b: int, selector: int) -> int:
    """prmt.b32 (default mode): byte i of the result is byte (selector nibble i & 7) of the
    64-bit {b, a}, or that byte's sign replicated when the nibble's bit 3 is set."""
    pool = ((b & MASK32) << 32) | (a & MASK32)
    out = 0
    for i in range(4):
        nibble = (selector >> (4 * i)) & 0xF
        byte = (pool >> (8 * (nibble & 7))) & 0xFF
        if nibble & 8:
            byte = 0xFF if byte & 0x80 else 0
        out |= byte << (8 * i)
    return out


def lop3(a: int, b: int, c: int, lut: int) -> int:
    """lop3.b32: bit k of the result is bit (a_k << 2 | b_k << 1 | c_k) of `lut` (so a LUT
    is F(0xF0, 0xCC, 0xAA) for the function F it computes)."""
    out = 0
    for index in range(8):
        if (lut >> index) & 1:
            term = (a if index & 4 else ~a) & (b if index & 2 else ~b) & (c if index & 1 else ~c)
            out |= term
    return out & MASK32


_OPS = {
    "prmt.b32": lambda a, b, c: prmt(a, b, c),
    "lop3.b32": lambda a, b, c, lut: lop3(a, b, c, lut),
    "shr.u32": lambda a, n: (a & MASK32) >> min(n, 32),
    "shl.b32": lambda a, n: (a << min(n, 32)) & MASK32,
    "and.b32": lambda a, b: a & b & MASK32,
    "or.b32": lambda a, b: (a | b) & MASK32,
    "xor.b32": lambda a, b: (a ^ b) & MASK32,
    "mov.b32": lambda a: a & MASK32,
}


def run(asm: str, inputs: dict[int, int], outputs: int) -> list[int]:
    """Run `asm` with operand $i = inputs[i] and return $0 .. $(outputs - 1)."""
    regs: dict[str, int] = {f"${i}": v & MASK32 for i, v in inputs.items()}
    body = re.sub(r"//[^\n]*", "", asm)
    for statement in (s.strip().strip("{}").strip() for s in body.split(";")):
        if not statement or statement.startswith(".reg"):
            continue
        opcode, _, rest = statement.partition(" ")
        if opcode not in _OPS:
            raise ValueError(f"ptx_emulator: unsupported instruction {opcode!r} in {statement!r}")
        dest, *operands = [o.strip() for o in rest.split(",")]
        values = [_value(o, regs) for o in operands]
        regs[dest] = _OPS[opcode](*values)
    return [regs[f"${i}"] for i in range(outputs)]


def _value(operand: str, regs: dict[str, int]) -> int:
    if operand in regs:
        return regs[operand]
    if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", operand):
        return int(operand, 0)
    raise ValueError(f"ptx_emulator: {operand!r} is neither a set register nor an immediate")
