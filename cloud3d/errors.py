"""The error family: every error a user can cause or fix is a :class:`Cloud3dError`.

The CLI (:mod:`cloud3d.cli`) prints a ``Cloud3dError`` as one line, ``error: MESSAGE``,
and exits with status 1; it never shows a traceback for one. Messages name the thing
(file, option, codec) and, where there is one, the fix.

Codec errors belong to the family, so a codec error raised deep inside a learned model
or an external program reaches the user as it is, with no translation on the way.
"""

from __future__ import annotations

import errno
import os


class Cloud3dError(Exception):
    """An error the user can fix (bad path, corrupt file, missing binary, bad option...)."""


class CodecUnavailable(Cloud3dError):
    """A codec cannot run here; the message says why and how to install it."""


class CodecError(Cloud3dError):
    """Encoding or decoding failed for one input (corrupt stream, binary crashed...)."""


def describe_os_error(exc: OSError, path: str | os.PathLike | None = None, action: str | None = None) -> str:
    """One-line explanation of an OSError, naming the file and the likely cause.

    Args:
        exc: the error.
        path: the file concerned, when ``exc`` does not name it (or names a temp file).
        action: ``"read"`` or ``"write"`` when known, so a permission error says which;
            ``None`` gives a message that fits both.
    """
    where = f" {path}" if path is not None else (f" {exc.filename}" if exc.filename else "")
    if exc.errno == errno.ENOSPC:
        return f"disk full while writing{where}: free some space or choose another output folder"
    if exc.errno == errno.EROFS:
        return f"cannot write{where}: read-only filesystem"
    if exc.errno in (errno.EACCES, errno.EPERM):
        if action:
            return f"cannot {action}{where}: permission denied (check the owner and mode of the file and its folder)"
        return f"permission denied:{where} (check the owner and mode of the file and its folder)"
    if exc.errno == errno.ENOENT:
        return f"no such file or folder:{where}"
    return f"{exc.strerror or exc}{where}"
