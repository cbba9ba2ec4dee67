"""The compiled wavefront step (``_wavestep.c``), loaded with ctypes, or None where it was not built.

:mod:`archiver.codecs.pyramid.wave` decodes through it when it is here and through numpy otherwise;
both give the same integers (``tests/codecs/pyramid/test_native.py``). The C functions take raw
addresses: the caller passes ``array.ctypes.data`` of contiguous arrays of the documented dtypes and
keeps them alive for the call. Set ``ARCHIVER_NUMPY_WAVEFRONT=1`` to use the numpy path anyway
(tests and benchmarks compare the two).

Why compiled: a wavefront step runs some 60 numpy calls on a few thousand positions; extracting 48
crops of 256² took 0.67 s of CPU in that loop (py-spy: the context network 33 %, the range decoder
17 %, the gathers 15 %, the sort 9 %, the rest glue), the chain every image of an extract waits on.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

import numpy as np

from .net import BUCKETS
from .plan import CAUSAL_NEIGHBOURS, NEIGHBOURS

__all__ = ["LIBRARY", "MAX_HIDDEN", "takes", "decode_pass"]

#: Most hidden units the compiled network takes (its work arrays are on the stack).
MAX_HIDDEN = 64
#: Features the compiled network reads, ``FEATURES`` in ``_wavestep.c`` (wave.FEATURES: the parent
#: and its four neighbours, then the four causal neighbours).
FEATURES = 9

_P, _I = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES = {
    # count, k, own_pos, parent_pos, own_size, parent_size, inside, inside_stride, own, parent,
    # own_off, parent_off, net, hidden, key_base, mean, bucket, key
    "wave_features_net": (None, [_I, _I, _P, _P, _I, _I, _P, _I, _P, _P, _P, _P, _P, _I, _P, _P, _P, _P]),
    # n, key, nkeys, counts, order, run_key, run_start, run_stop -> runs
    "wave_sort": (_I, [_I, _P, _I, _P, _P, _P, _P, _P]),
    # n, order, symbols, mean, bucket, lows, values
    "wave_values": (None, [_I, _P, _P, _P, _P, _P, _P]),
    # count, k, values, own_pos, own_size, own, coded, coded_stride, start
    "wave_store": (None, [_I, _I, _P, _P, _I, _P, _P, _I, _I]),
    # base, x, net, hidden, mean, bucket -> positions (the network alone, for the tests)
    "wave_run_net": (_I, [_I, _P, _P, _I, _P, _P]),
}


def _load():
    if os.environ.get("ARCHIVER_NUMPY_WAVEFRONT"):
        return None
    spec = importlib.util.find_spec(f"{__package__}._wavestep")
    if spec is None or not spec.origin:
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
    except OSError:
        return None
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


#: The library, or None (not built, or ``ARCHIVER_NUMPY_WAVEFRONT`` set at import).
LIBRARY = _load()


def takes(coder) -> bool:
    """Whether the compiled step can decode for ``coder`` (a wavefront
    :class:`~archiver.codecs.pyramid.coder.PyramidCoder`): the library is here and the network is
    of the shape it computes (:data:`FEATURES` features and the levels' one-hot, at most
    :data:`MAX_HIDDEN` hidden units)."""
    if LIBRARY is None:
        return False
    (w1, _), (w2, _), (w3, _) = coder.net.layers[0]
    hidden = w1.shape[0]
    return (hidden <= MAX_HIDDEN and w1.shape[1] == FEATURES + coder.spec.levels and w2.shape == (hidden, hidden)
            and w3.shape == (2, hidden))  # fmt: skip


def _level_net(coder, level: int) -> tuple[np.ndarray, int]:
    """The network's weights for ``level`` as ``wave_features_net`` reads them, and its hidden
    units padded to a multiple of 4 (the padding units have zero weights: outputs 0, no effect).
    Float64, exact, as :meth:`~archiver.codecs.pyramid.net.ContextNet.run` computes: W1's feature
    columns, B1 plus W1's column of the level's one-hot, W2 / 2**8, B2, W3 / 2**8 (4 rows), B3
    (4), row-major."""
    (w1, b1), (w2, b2), (w3, b3) = (tuple(a.astype(np.float64) for a in layer) for layer in coder.net.layers[0])
    hidden = -(-w1.shape[0] // 4) * 4

    def pad(a, rows, cols=None):
        out = np.zeros((rows,) if cols is None else (rows, cols))
        out[tuple(slice(0, n) for n in a.shape)] = a
        return out

    parts = [pad(w1[:, :FEATURES], hidden, FEATURES), pad(b1 + w1[:, FEATURES + level], hidden),
             pad(w2 / 256.0, hidden, hidden), pad(b2, hidden), pad(w3 / 256.0, 4, hidden), pad(b3, 4)]  # fmt: skip
    return np.ascontiguousarray(np.concatenate([p.ravel() for p in parts])), hidden


class _Arrays:
    """One level of one block as addresses for the library: its plan's per-position indices and
    tile mask, its grids, its neighbours' offsets. Holds the arrays it points into."""

    def __init__(self, block, plan) -> None:
        self.n = block.n
        self.own_pos = _contiguous(plan.own, np.int64)
        self.parent_pos = _contiguous(plan.parent, np.int64)
        self.inside = _contiguous(plan.inside, np.bool_)
        self.key_base = _contiguous(block.keys, np.int64)
        width, parent_width = plan.w + 2, plan.w // 2 + 2
        self.own_off = np.array([dy * width + dx for dy, dx in CAUSAL_NEIGHBOURS], dtype=np.int64)
        self.parent_off = np.array([dy * parent_width + dx for dy, dx in ((0, 0),) + NEIGHBOURS], dtype=np.int64)
        own, parent = block.own, block.parent
        for a, dtype in ((own, np.int16), (parent, np.int16), (block.coded, np.int64)):
            if a is not None and (a.dtype != dtype or not a.flags.c_contiguous):  # the C code would misread them
                raise TypeError(f"wavefront block arrays: {a.dtype} {a.flags.c_contiguous}, expected contiguous {dtype}")
        self.own, self.parent, self.coded = own, parent, block.coded
        self.addr = {name: getattr(self, name).ctypes.data
                     for name in ("own_pos", "parent_pos", "inside", "key_base", "own_off", "parent_off", "own", "coded")}  # fmt: skip
        self.addr["parent"] = None if parent is None else parent.ctypes.data
        self.sizes = (plan.padded_size, plan.parent_size, self.inside.shape[1], plan.h * plan.w)


def _contiguous(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def decode_pass(coder, decoders: list, blocks: list) -> None:
    """:func:`archiver.codecs.pyramid.wave._decode_pass` with each step's features, network, sort
    and stores compiled; the runs' symbols still come from ``coder.decode_runs`` (constriction)."""
    lib, spec, calls = LIBRARY, coder.spec, {}
    lows, nkeys = _contiguous(coder._lows, np.int64), len(decoders) * BUCKETS
    counts, run_key, run_start, run_stop = (np.empty(nkeys, dtype=np.int64) for _ in range(4))
    a_counts, a_rk, a_rs, a_re, a_lows = (x.ctypes.data for x in (counts, run_key, run_start, run_stop, lows))
    for level in reversed(range(spec.levels)):
        plans = [b.start(level, spec.context_tile) for b in blocks]
        arrays = [_Arrays(b, p) for b, p in zip(blocks, plans)]
        bounds = [p.bounds.tolist() for p in plans]
        largest = sum(b.n * int(np.diff(p.bounds).max(initial=0)) for b, p in zip(blocks, plans))
        net, hidden = _level_net(coder, level)
        mean, bucket, symbols = (np.empty(largest, dtype=np.int32) for _ in range(3))
        key, order, values = np.empty(largest, dtype=np.uint16), np.empty(largest, dtype=np.int64), np.empty(largest, dtype=np.int64)
        a_net, a_mean, a_bucket, a_sym, a_key, a_order, a_values = (
            x.ctypes.data for x in (net, mean, bucket, symbols, key, order, values))  # fmt: skip
        for t in range(max(p.steps for p in plans)):
            here, n = [], 0
            for arr, bd in zip(arrays, bounds):
                if t + 1 < len(bd) and bd[t + 1] > bd[t]:
                    start, k = bd[t], bd[t + 1] - bd[t]
                    a, (own_size, parent_size, inside_stride, _) = arr.addr, arr.sizes
                    lib.wave_features_net(arr.n, k, a["own_pos"] + 8 * start, a["parent_pos"] + 8 * start, own_size,
                                          parent_size, a["inside"] + start, inside_stride, a["own"], a["parent"],
                                          a["own_off"], a["parent_off"], a_net, hidden, a["key_base"],
                                          a_mean + 4 * n, a_bucket + 4 * n, a_key + 2 * n)  # fmt: skip
                    here.append((arr, start, k, n))
                    n += arr.n * k
            if not here:
                continue
            runs = lib.wave_sort(n, a_key, nkeys, a_counts, a_order, a_rk, a_rs, a_re)
            coder.decode_runs(decoders, zip(run_key[:runs].tolist(), run_start[:runs].tolist(), run_stop[:runs].tolist()),
                              symbols, calls)  # fmt: skip
            lib.wave_values(n, a_order, a_sym, a_mean, a_bucket, a_lows, a_values)
            for arr, start, k, first in here:
                a = arr.addr
                lib.wave_store(arr.n, k, a_values + 8 * first, a["own_pos"] + 8 * start, arr.sizes[0], a["own"],
                               a["coded"], arr.sizes[3], start)  # fmt: skip
