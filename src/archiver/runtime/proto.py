"""ONNX model bytes at read time, without the ``onnx`` package: weights attached, int8 weights folded.

An archive stores each network's graph as a serialized ``ModelProto`` without its weights
(:func:`archiver.runtime.graph.graph_only`) and the int8 weights as arrays. Building an ONNX Runtime
session needs the two put together (:func:`attach_weights`) and, for speed, the constant
``DequantizeLinear`` of every int8 weight replaced by its float32 result (:func:`fold_dequantize`).
Importing ``onnx`` for that costs about half a second (it pulls in ``ml_dtypes``), more than
decoding a few hundred kilopixels, so this module reads and writes the few protobuf messages it
touches itself (the wire format: https://protobuf.dev/programming-guides/encoding/; field numbers
from ``onnx/onnx.proto``). Fields it does not change are copied byte for byte.

The bytes are those ``onnx``'s own helpers produced before (``numpy_helper.from_array`` for the new
initializers, protobuf's field order for the messages it rewrites), and the folded weights the same
float32 products, so sessions and decoded pixels are unchanged (tests/runtime/test_proto.py
compares against ``onnx``). Only building the graphs (pack time) imports ``onnx``.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np

from ..errors import CorruptArchiveError

__all__ = ["OPSET", "INPUT", "OUTPUT", "DENOISER_INPUT", "attach_weights", "fold_dequantize", "model_bytes"]

#: ONNX opset of the graphs.
OPSET = 17
INPUT = "latent"  #: decoder input, float32 [N, C, h, w]
OUTPUT = "rgb"  #: output of every graph, uint8 [N, 3, H, W]
DENOISER_INPUT = "decoded"  #: post-filter input, uint8 [N, 3, H, W]

# Wire types and the field numbers used here (onnx/onnx.proto, proto2).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_I = 1, 3
_T_DIMS, _T_DATA_TYPE, _T_FLOAT, _T_INT32, _T_NAME, _T_RAW, _T_DOUBLE, _T_LOCATION = 1, 2, 4, 5, 8, 9, 10, 14

#: TensorProto.DataType → numpy dtype (the numeric types; strings and sub-byte types are not read).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 4: np.dtype(np.uint16),
    5: np.dtype(np.int16), 6: np.dtype(np.int32), 7: np.dtype(np.int64), 9: np.dtype(np.bool_),
    10: np.dtype(np.float16), 11: np.dtype(np.float64), 12: np.dtype(np.uint32), 13: np.dtype(np.uint64),
}  # fmt: skip
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


class _Malformed(ValueError):
    pass


class _Field(NamedTuple):
    number: int
    wire: int
    value: int | bytes  #: the integer (varint, fixed) or the payload (length-delimited)
    raw: bytes  #: the whole field as it was read: tag and value


# -- wire format --------------------------------------------------------------------------------
def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[_Field]:
    """The fields of one serialized message, in order (repeated fields appear once per value)."""
    out, pos, end = [], 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        else:
            raise _Malformed(f"wire type {wire}")
        if number == 0 or pos > end:
            raise _Malformed("bad field number or truncated field")
        out.append(_Field(number, wire, value, buf[start:pos]))
    return out


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as ten bytes, as protobuf writes them
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, _LEN) + _varint(len(payload)) + payload


def _message(fields: list[_Field] | list[tuple[int, bytes]]) -> bytes:
    """Fields joined in field-number order (stable), the order protobuf serializes them in."""
    return b"".join(f[-1] for f in sorted(fields, key=lambda f: f[0]))


def _strings(fields: list[_Field], number: int) -> list[str]:
    values = [f.value for f in fields if f.number == number and f.wire == _LEN]
    return [v.decode("utf-8") for v in values]  # type: ignore[union-attr]


def _last(fields: list[_Field], number: int, default=None):
    values = [f.value for f in fields if f.number == number]
    return values[-1] if values else default


def _scalars(field: _Field, width: int = 0) -> list[int]:
    """The integers of a repeated scalar field value, packed or not (``width``: 4 or 8 bytes for
    fixed-size values, 0 for varints)."""
    if field.wire != _LEN:
        return [field.value]  # type: ignore[list-item]
    data, pos, out = field.value, 0, []
    while pos < len(data):  # type: ignore[arg-type]
        if width:
            out.append(int.from_bytes(data[pos : pos + width], "little"))  # type: ignore[index]
            pos += width
        else:
            value, pos = _read_varint(data, pos)  # type: ignore[arg-type]
            out.append(value)
    if pos != len(data):  # type: ignore[arg-type]
        raise _Malformed("truncated packed field")
    return out


# -- TensorProto ----------------------------------------------------------------------------------
def _tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto holding ``array`` in ``raw_data``: the bytes ``onnx.numpy_helper.from_array`` writes."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise CorruptArchiveError(f"weight {name!r} has dtype {array.dtype}, which no ONNX graph here takes")
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    dims = b"".join(_key(_T_DIMS, _VARINT) + _varint(d) for d in array.shape)
    name_field = _len_field(_T_NAME, name.encode("utf-8")) if name else b""
    return dims + _key(_T_DATA_TYPE, _VARINT) + _varint(code) + name_field + _len_field(_T_RAW, raw)


def _tensor_name(raw: bytes) -> str:
    value = _last(_fields(raw), _T_NAME, b"")
    return value.decode("utf-8")


def _tensor_array(payload: bytes) -> np.ndarray:
    """The numpy array of a TensorProto, as ``onnx.numpy_helper.to_array`` reads the numeric ones."""
    fields = _fields(payload)
    dims = [d - (1 << 64) if d >= 1 << 63 else d for f in fields if f.number == _T_DIMS for d in _scalars(f)]
    dtype = _DTYPES.get(_last(fields, _T_DATA_TYPE, 0))
    if dtype is None or _last(fields, _T_LOCATION, 0) != 0:
        raise _Malformed("a tensor of a type or location this reader does not take")
    raw = _last(fields, _T_RAW)
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    elif dtype == np.float32:
        values = [v for f in fields if f.number == _T_FLOAT for v in _scalars(f, 4)]
        array = np.array(values, np.uint32).view(np.float32)
    elif dtype == np.float64:
        values = [v for f in fields if f.number == _T_DOUBLE for v in _scalars(f, 8)]
        array = np.array(values, np.uint64).view(np.float64)
    elif dtype in (np.int64, np.uint64, np.float16):
        raise _Malformed("a typed-data tensor this reader does not take")
    else:  # int32_data: int8, uint8, int16, uint16, int32, bool (signed varints)
        values = [v - (1 << 64) if v >= 1 << 63 else v for f in fields if f.number == _T_INT32 for v in _scalars(f)]
        array = np.array(values, np.int64).astype(dtype)
    if any(d < 0 for d in dims) or array.size != int(np.prod(dims, dtype=np.int64)):
        raise _Malformed("tensor data does not fill its dims")
    return array.reshape(dims)


# -- ModelProto / GraphProto / NodeProto -----------------------------------------------------------
class _Node(NamedTuple):
    raw: bytes
    op_type: str
    inputs: list[str]
    outputs: list[str]
    fields: list[_Field]

    @classmethod
    def parse(cls, field: _Field) -> "_Node":
        fields = _fields(field.value)  # type: ignore[arg-type]
        op = _last(fields, _NODE_OP_TYPE, b"").decode("utf-8")
        return cls(field.raw, op, _strings(fields, _NODE_INPUT), _strings(fields, _NODE_OUTPUT), fields)

    def int_attribute(self, name: str, default: int) -> int:
        value = default
        for f in self.fields:
            if f.number == _NODE_ATTRIBUTE and f.wire == _LEN:
                attr = _fields(f.value)  # type: ignore[arg-type]
                if _last(attr, _ATTR_NAME, b"").decode("utf-8") == name:
                    i = _last(attr, _ATTR_I, default)
                    value = i - (1 << 64) if i >= 1 << 63 else i
        return value


def _split(model: bytes) -> tuple[list[_Field], list[_Field]]:
    """(model fields other than the graph, graph fields); several graph fields merge, as in protobuf."""
    top = _fields(model)
    graph = b"".join(f.value for f in top if f.number == _MODEL_GRAPH and f.wire == _LEN)  # type: ignore[misc]
    return [f for f in top if f.number != _MODEL_GRAPH], _fields(graph)


def _join(top: list[_Field], graph: list[_Field] | list[tuple[int, bytes]]) -> bytes:
    return _message([*top, (_MODEL_GRAPH, _len_field(_MODEL_GRAPH, _message(graph)))])


def _checked(what: str):
    """Decorator: malformed bytes raise :class:`CorruptArchiveError` naming ``what``."""

    def wrap(fn):
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            # _Malformed, UnicodeDecodeError, numpy's; a field of an unexpected wire type: Type/AttributeError
            except (ValueError, IndexError, OverflowError, TypeError, AttributeError) as exc:
                raise CorruptArchiveError(f"{what}: the ONNX graph is malformed ({exc})") from None

        run.__name__, run.__doc__, run.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
        return run

    return wrap


@_checked("attaching the weights")
def attach_weights(data: bytes, arrays: Mapping[str, np.ndarray]) -> bytes:
    """A graph from :func:`~archiver.runtime.graph.graph_only` with the archive's arrays added as its
    initializers (those its nodes read by dotted name), sorted by name after the graph's own: a
    serialized ModelProto."""
    top, graph = _split(bytes(data))
    have = {_tensor_name(f.value) for f in graph if f.number == _GRAPH_INITIALIZER}  # type: ignore[arg-type]
    nodes = [_Node.parse(f) for f in graph if f.number == _GRAPH_NODE]
    needed = {i for n in nodes for i in n.inputs if "." in i} - have
    missing = needed - set(arrays)
    if missing:
        raise CorruptArchiveError(f"decoder weights missing for the ONNX graph: {sorted(missing)[:3]}")
    added = [(_GRAPH_INITIALIZER, _len_field(_GRAPH_INITIALIZER, _tensor(name, arrays[name])))
             for name in sorted(needed)]  # fmt: skip
    return _join(top, [*graph, *added])


@_checked("folding the int8 weights")
def fold_dequantize(model: bytes) -> bytes:
    """Replace every ``DequantizeLinear`` of constant int8 weights by its float32 result.

    The stored graph keeps the int8 semantics; folding them before a session is created lets ONNX
    Runtime pre-pack float weights (measured: 1.9 → 2.9 Mpx/s for the default decoder on 2 cores).
    The value is the same single float32 product ``(q − zero) · scale`` that ``DequantizeLinear``
    computes, per output channel (axis 0). Initializers no node reads any more are dropped.
    """
    top, graph = _split(bytes(model))
    # (name, field bytes) of every initializer: the graph's own, then each folded weight in node order
    own = [(_tensor_name(f.value), f) for f in graph if f.number == _GRAPH_INITIALIZER]  # type: ignore[arg-type]
    initializers = [(name, f.raw) for name, f in own]
    constants = {name: f.value for name, f in own}  # a repeated name: the last one, as before
    keep: list[_Node] = []
    for node in (_Node.parse(f) for f in graph if f.number == _GRAPH_NODE):
        weight = _folded(node, constants)  # type: ignore[arg-type]
        if weight is None:
            keep.append(node)
        else:
            initializers.append((node.outputs[0], _len_field(_GRAPH_INITIALIZER, _tensor(node.outputs[0], weight))))
    used = {i for n in keep for i in n.inputs}
    rest = [(f.number, f.raw) for f in graph if f.number not in (_GRAPH_NODE, _GRAPH_INITIALIZER)]
    nodes = [(_GRAPH_NODE, n.raw) for n in keep]
    return _join(top, [*rest, *nodes, *((_GRAPH_INITIALIZER, raw) for name, raw in initializers if name in used)])


def _folded(node: _Node, inits: dict[str, bytes]) -> np.ndarray | None:
    """The float32 weight a constant per-output-channel ``DequantizeLinear`` computes, else None."""
    if node.op_type != "DequantizeLinear" or len(node.inputs) != 3 or len(node.outputs) != 1:
        return None
    if not all(i in inits for i in node.inputs):
        return None
    q, scale, zero = (_tensor_array(inits[i]).astype(np.float32) for i in node.inputs)
    if scale.size != 1 and (node.int_attribute("axis", 1) != 0 or scale.shape != (q.shape[0],)):
        return None  # not the per-output-channel form the graphs here use: left to ONNX Runtime
    if zero.shape != scale.shape:
        return None
    shape = (-1,) + (1,) * (q.ndim - 1)
    return ((q - zero.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def model_bytes(model) -> bytes:
    """Serialized ModelProto bytes of ``model``: bytes as they are, or an ``onnx.ModelProto`` (from
    the graph builders, pack time) serialized."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    return model.SerializeToString()
