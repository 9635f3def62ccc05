"""Plain values over a pipe: how the trusted test calls the untrusted program (standard library only).

The test process and the program process share nothing but two pipes. Each message is a frame:
4 bytes of length (big-endian) and that many bytes of JSON. Values are *plain*: ``None``,
``bool``, ``int``, ``float`` (NaN and infinities included), ``str``, ``bytes``, ``complex`` and
``list``, ``tuple``, ``dict``, ``set``, ``frozenset`` of plain values. JSON arrays carry a tag
(``["l", items]`` a list, ``["t", items]`` a tuple, ``["d", [[k, v], ...]]`` a dict, ``["s", ...]``
a set, ``["f", ...]`` a frozenset, ``["b", hex]`` bytes, ``["c", re, im]`` a complex, ``["i", hex]``
an int too long for JSON); JSON objects never occur.

``decode`` is the trust boundary: whatever bytes the program writes, it returns only values of the
exact built-in types above (never a subclass, never an object with methods of the program's),
bounded in depth and size, or raises ``ProtocolError``. An ``__eq__`` that is always true cannot cross.

This file is also sent, as text, ahead of the harness (``child.py``) into the sandbox.
"""

import json
import struct

MAX_FRAME = 32 * 2**20  # bytes of one message; a larger one is refused
MAX_DEPTH = 100  # nesting of containers
_BIG = 2**62
_HEADER = struct.Struct(">I")


class ProtocolError(BaseException):
    """A frame or value that breaks the protocol, or a program that ended mid-call: the sample
    fails. Not an ``Exception``, so a test's own ``except Exception`` cannot swallow it."""


def encode(value, depth=0):
    """Plain value -> JSON-ready tree, exact types only (the test side: its values are plain)."""
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return value if -_BIG < value < _BIG else ["i", hex(value)]
    if kind is bytes:
        return ["b", value.hex()]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind in (list, tuple, set, frozenset):
        tag = {list: "l", tuple: "t", set: "s", frozenset: "f"}[kind]
        return [tag, [encode(v, depth + 1) for v in value]]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    raise ProtocolError(f"not a plain value: {kind.__name__}")


def _decode(tree, depth):
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    kind = type(tree)
    if tree is None or kind is bool or kind is str or kind is float or kind is int:
        return tree
    if kind is not list or len(tree) < 2 or type(tree[0]) is not str:
        raise ProtocolError(f"malformed value: {kind.__name__}")
    tag, body = tree[0], tree[1]
    try:
        if tag == "i" and type(body) is str and len(tree) == 2:
            return int(body, 16)
        if tag == "b" and type(body) is str and len(tree) == 2:
            return bytes.fromhex(body)
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    if tag == "c" and len(tree) == 3 and all(type(x) in (int, float) for x in tree[1:]):
        return complex(tree[1], tree[2])
    if type(body) is not list or len(tree) != 2:
        raise ProtocolError(f"malformed value with tag {tag!r}")
    items = [_decode(v, depth + 1) for v in body] if tag != "d" else None
    try:
        if tag == "l":
            return items
        if tag == "t":
            return tuple(items)
        if tag == "s":
            return set(items)
        if tag == "f":
            return frozenset(items)
        if tag == "d":
            pairs = []
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("malformed dict item")
                pairs.append((_decode(pair[0], depth + 1), _decode(pair[1], depth + 1)))
            return dict(pairs)
    except TypeError as exc:  # an unhashable key or set member
        raise ProtocolError(str(exc)) from None
    raise ProtocolError(f"unknown tag {tag!r}")


def decode(tree):
    """JSON tree -> plain value of exact built-in types, or ``ProtocolError`` (the trusted side)."""
    return _decode(tree, 0)


def plain(value, depth=0):
    """The program side's lenient conversion of a result to a plain value.

    Subclasses of the plain types become their base type and numpy scalars and arrays their Python
    values (``item`` / ``tolist``), so honest code keeps working; anything else (a generator, an
    object of the program's own class) is ``ProtocolError``. This runs in the untrusted process:
    it is a convenience, not a check; ``decode`` on the other side is the check.
    """
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if value is None or type(value) in (bool, int, float, str, bytes, complex):
        return value
    for base in (bool, int, float, str, bytes, complex):
        if isinstance(value, base):
            return base(value)
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return base(plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return {plain(k, depth + 1): plain(v, depth + 1) for k, v in value.items()}
    module = type(value).__module__ or ""
    if module.split(".")[0] == "numpy":
        convert = getattr(value, "tolist", None) or getattr(value, "item", None)
        if convert is not None:
            return plain(convert(), depth + 1)
    raise ProtocolError(f"the function returned a {type(value).__name__}, not a plain value "
                        "(None, bool, int, float, complex, str, bytes or a list/tuple/dict/set of them)")


def dumps(tree):
    """One frame: length + JSON (NaN and infinities as JSON's extensions)."""
    data = json.dumps(tree, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(data)) + data


def _read_exactly(read, fd, size):
    chunks, left = [], size
    while left:
        chunk = read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(read, fd):
    """The next frame's JSON tree, or None at end of stream; ``ProtocolError`` if malformed."""
    header = _read_exactly(read, fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"message of {size} bytes is over the {MAX_FRAME}-byte limit")
    data = _read_exactly(read, fd, size)
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None


def write_frame(write, fd, tree):
    data = dumps(tree)
    while data:
        data = data[write(fd, data):]
