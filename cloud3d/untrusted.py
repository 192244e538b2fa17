"""Reading files that someone else may have made: regular files only, bounded by reading.

A path given to the toolkit (a model card, a stream, an archive, a results table) may be a
symbolic link to ``/dev/zero``, a named pipe nobody writes to, or a file far larger than
its kind can be. ``stat`` cannot tell: a device or a pipe reports size 0, and a file can
grow after it was looked at. So every such read here

* opens with ``O_NONBLOCK`` (opening a FIFO does not wait for a writer) and checks the
  *opened* descriptor with ``fstat``: only a regular file is read (a symbolic link to one is
  fine; to a device, FIFO or socket it is refused);
* reads at most ``limit + 1`` bytes, so a file above its limit is refused after reading no
  more than the limit, whatever ``stat`` said.

JSON from such files also has a bounded nesting depth (:func:`loads_json`): Python's parser
recurses once per level and a few kilobytes of ``[[[[...`` end in a ``RecursionError``.
Every refusal is a one-line :class:`~cloud3d.errors.Cloud3dError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, BinaryIO

from cloud3d.errors import Cloud3dError

#: deepest JSON nesting accepted (objects and arrays); our own files use fewer than 8 levels
MAX_JSON_DEPTH = 64
#: longest excerpt of untrusted text quoted in an error message (characters)
MAX_QUOTE = 80

_KIND = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
         (stat.S_ISSOCK, "a socket"))
#: a JSON string, or one bracket: what the depth scan looks at
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut), on one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_regular(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading (the caller closes it; a ``with`` block will),
    refused (:class:`Cloud3dError`) unless what was opened is a regular file. ``what`` names
    the file's role in messages ("model card")."""
    src = os.fspath(path)
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Cloud3dError(f"cannot read {what} {src}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KIND if test(mode)), "not a regular file")
            raise Cloud3dError(f"{what} {src} is {kind}, not a regular file: refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``limit`` bytes
    (found by reading at most ``limit + 1`` of them, not by ``stat``)."""
    src = os.fspath(path)
    with open_regular(src, what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise Cloud3dError(f"cannot read {what} {src}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise Cloud3dError(f"{what} {src} holds more than {limit} bytes, the most a {what} may "
                           "hold: refused")
    return data


def json_depth(data: bytes) -> int:
    """Deepest nesting of objects and arrays in the JSON text ``data`` (strings skipped)."""
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif tok in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def loads_json(data: bytes, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse UTF-8 JSON ``data`` from ``source`` strictly: nesting at most ``max_depth`` deep,
    no ``NaN``/``Infinity`` (not JSON; they also break canonical re-encoding). Cloud3dError
    naming ``source`` otherwise."""
    depth = json_depth(data)
    if depth > max_depth:
        raise Cloud3dError(f"{source}: JSON nested {depth} levels deep (at most {max_depth}): "
                           "refused")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise Cloud3dError(f"{source}: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise Cloud3dError(f"{source}: not valid JSON ({first[:120]})") from None


def read_json(path: str | os.PathLike, limit: int, what: str = "JSON file",
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """:func:`read_regular` then :func:`loads_json`: a bounded, regular, strict JSON file."""
    return loads_json(read_regular(path, limit, what), f"{what} {os.fspath(path)}", max_depth)
