"""The app-name rule: an app name is a folder name in every stage's output.

Capture writes ``OUT/{app}/``, the dataset ``{split}/{app}-{res}/``, so the rule lives in the
core where both find it.
"""

from __future__ import annotations

import re

__all__ = ["check_app_name"]

_APP_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]*$")
_ALLOWED = ("use letters, digits, '_', '.', '+' or '-', not starting with '.' or '-' "
            "(no spaces or '/')")


def check_app_name(app: str) -> str:
    """``app`` if it is a valid app name, else ``ValueError`` saying why.

    Valid: letters, digits, ``_ . + -``, not starting with ``.`` or ``-`` (e.g.
    ``supertuxkart``, ``0ad``, ``dota2``). ``.`` and ``..`` would write into the output
    folder itself or climb out of it, a hidden name (``.x``) is skipped by every reader of
    the layout, and a leading ``-`` reads as an option on a command line.
    """
    if app in (".", ".."):
        raise ValueError(f"invalid app name {app!r}: '.' and '..' are not folder names of their "
                         f"own (they would write outside the app's folder); {_ALLOWED}")
    if not isinstance(app, str) or not _APP_RE.match(app):
        raise ValueError(f"invalid app name {app!r}: {_ALLOWED}")
    return app
