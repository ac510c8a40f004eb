"""How close two model outputs must be, in one place, so the suite passes on any x86 CPU.

Two runs give the same floats only when they are the same computation: the same kernels on the
same batch. Anything else sums in another order: another batch composition or padding, another
runtime, another kernel (OpenVINO streams, snippets on or off, the first-token cut), or another
CPU (AVX-512 without AMX sums otherwise than AMX; seen: 1.3e-6 on probabilities, 1.05e-5 on
logits of size ~8). Tests compare with these names, never with a bare literal, and compare
*decisions* (labels, tiers, exits) only on rows whose margin is wider than the tolerance, since a
row on the boundary may fall either way under an honest reordering.
"""

from __future__ import annotations

import numpy as np

SAME_COMPUTATION = 0.0  # the very same kernels on the very same batch: bit-identical
FP32_REORDERED = 1e-4  # fp32 logits or probabilities, summed in another order (10x the worst seen)
FP32_SOFT_TEMPERATURE = 2e-3  # probabilities at temperatures ~1e-4, which scale logit noise 1e4-fold


def assert_close(actual, expected, tolerance: float = FP32_REORDERED, err_msg: str = "") -> None:
    """Element-wise ``|actual - expected| <= tolerance`` (absolute; exact for SAME_COMPUTATION)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if tolerance == SAME_COMPUTATION:
        np.testing.assert_array_equal(actual, expected, err_msg=err_msg)
    else:
        np.testing.assert_allclose(actual, expected, atol=tolerance, rtol=0, err_msg=err_msg)


def clear_of(values, boundary, tolerance: float = FP32_REORDERED) -> np.ndarray:
    """Rows whose value lies further than ``tolerance`` from ``boundary``: their side is certain."""
    return np.abs(np.asarray(values, dtype=np.float64) - boundary) > tolerance


def label_margin(probabilities) -> np.ndarray:
    """Top-1 minus top-2 probability per row: how far each label is from flipping."""
    top = np.sort(np.asarray(probabilities, dtype=np.float64), axis=1)
    return top[:, -1] - top[:, -2]


def assert_same_labels(actual, expected, tolerance: float = FP32_REORDERED) -> np.ndarray:
    """The argmax of two probability (or logit) arrays agrees on every row whose expected top-2
    gap exceeds twice the tolerance; returns the mask of rows that were compared."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    clear = label_margin(expected) > 2 * tolerance
    np.testing.assert_array_equal(actual.argmax(axis=1)[clear], expected.argmax(axis=1)[clear])
    return clear


def assert_same_where_clear(actual, expected, clear: np.ndarray, err_msg: str = "") -> None:
    """Decisions (tiers, exits, labels) equal on the rows ``clear`` marks, and most rows clear."""
    clear = np.asarray(clear, dtype=bool)
    assert clear.mean() >= 0.5, "too few rows clear of the boundary for the comparison to mean anything"
    np.testing.assert_array_equal(np.asarray(actual)[clear], np.asarray(expected)[clear], err_msg=err_msg)


def _int8_dot_products() -> bool:
    """VNNI or AMX: int8 products summed straight into int32."""
    from tango.hardware import cpu_flags

    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


# The share of predictions an int8 IR of the random tiny model keeps. Its rows sit near the
# decision boundary, so int8 flips a few. Trained tiers keep >= 99.5% (docs/models.md). Without
# VNNI/AMX (2 AVX2 cores), int8 products are summed through int16 and flip more: seen 15 of 16
# built-in sentences and 25 of 30 check rows kept, against 27 of 30 with VNNI.
INT8_DOT_PRODUCTS = _int8_dot_products()
TINY_INT8_AGREEMENT = 0.85 if INT8_DOT_PRODUCTS else 0.75
# ONNX Runtime's dynamic int8 keeps every built-in sentence's prediction with VNNI/AMX; on 2 AVX2
# cores it kept 14 of 16
TINY_ONNX_INT8_AGREEMENT = 0.995 if INT8_DOT_PRODUCTS else 0.75
# Known defect, open: tango quantizes with full 8-bit weights, whose products saturate in the
# int16 sums of CPUs without VNNI/AMX (seen: int8 logits 3.7 from fp32 on 2 AVX2 cores, where
# VNNI keeps them within 1). The fix is 7-bit weights there (ONNX Runtime's reduce_range, NNCF's
# overflow fix); until then the int8-against-fp32 closeness tests are expected to fail there.
INT8_SATURATES = "int8 sums saturate without VNNI/AMX; tango does not quantize for it yet"
