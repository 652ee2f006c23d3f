import math

import pytest
import torch

from kernels.accuracy import compare, sqnr_db, tolerance_for


def test_sqnr_of_known_noise(seed):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(10000, generator=g, dtype=torch.float64)
    noise = torch.randn(10000, generator=g, dtype=torch.float64)
    noise *= 0.1 * ref.norm() / noise.norm()  # noise norm exactly 10% of the signal's
    assert sqnr_db(ref, ref + noise) == pytest.approx(20.0, abs=1e-9)
    assert sqnr_db(ref, ref) == math.inf


def test_compare_accepts_rounding_and_rejects_errors(seed):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(257, 13, generator=g)
    assert compare(ref.half().float(), ref, tolerance_for("fp16")).ok
    assert compare(ref.bfloat16().float(), ref, tolerance_for("bf16")).ok
    assert not compare(ref.bfloat16().float(), ref, tolerance_for("fp16")).ok
    wrong = ref.clone()
    wrong[5, 7] += 1.0
    result = compare(wrong, ref, tolerance_for("bf16"))
    assert not result.ok and result.bad_elements == 1


def test_compare_fails_on_unwritten_nan_elements(seed):
    ref = torch.randn(13, 13, generator=torch.Generator().manual_seed(seed))
    out = ref.clone()
    out[-1, -1] = float("nan")
    result = compare(out, ref, tolerance_for("fp32"))
    assert not result.ok and result.bad_elements == 1 and result.sqnr_db == -math.inf


def test_compare_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        compare(torch.zeros(2, 3), torch.zeros(3, 2), tolerance_for("fp32"))
