"""The text grammar of one ``--codec`` spec, split into its parts before any codec checks.

Grammar::

    NAME[:PARAM=V1,V2,...][;OPTION=VALUE;...]

``,`` separates quality values and ``;`` separates options. A value that holds either of
them, typically a path, is written in double quotes::

    learned:checkpoint="runs/a,b;c/best.pt"
    learned:checkpoint="runs/x,1/best.pt",runs/y/best.pt;coder=lzma
    bpg:qp=27;bpg_dir="/opt/bpg;old"

A quote opens only at the start of a value (after ``=`` or ``,``, spaces allowed) and closes
at the next ``"``; inside it every character is kept as is, so a quoted value cannot hold a
``"``. Only spaces may follow the closing quote before the next ``,``, ``;`` or the end. A
quoted value is always text (``"5"`` is the string 5); unquoted values are parsed as before
(numbers, true/false, else text). A ``"`` anywhere else is an ordinary character, so every
spec written without quotes means what it always meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

QUOTE = '"'


@dataclass
class SpecText:
    """The parts of a spec, quotes removed.

    ``qtext`` is the raw text after ``NAME:`` up to the options ('' when there is none);
    ``key``/``values`` its ``PARAM`` and values (empty values dropped; ``has_eq`` False when
    ``qtext`` holds no ``=``); ``options`` ``(KEY, VALUE, quoted)`` in order; ``option_text``
    the raw text from the first ``;`` on ('' when there is none).
    """

    name: str
    qtext: str = ""
    key: str = ""
    has_eq: bool = False
    values: list[tuple[str, bool]] = field(default_factory=list)
    options: list[tuple[str, str, bool]] = field(default_factory=list)
    option_text: str = ""

    def with_values(self, key: str, values: list[str]) -> SpecText:
        """The same codec and options with the quality ``key=values`` instead (values parsed
        as unquoted ones; quoted in :meth:`text` where they need it)."""
        qtext = f"{key}=" + ",".join(quote_value(v) for v in values)
        return replace(self, qtext=qtext, key=key, has_eq=True, values=[(v, False) for v in values])

    def text(self) -> str:
        """These parts as one spec string."""
        return f"{self.name}{':' + self.qtext if self.qtext else ''}{self.option_text}"


def spec_name(spec: str) -> str:
    """The codec name of ``spec``: the text before the first ``:`` or ``;``, stripped."""
    return _upto(spec, 0, ":;")[0].strip()


def split_spec(spec: str, who: str) -> SpecText:
    """``spec`` split into its parts; ``who`` (the codec's name) starts every message.

    Raises:
        ValueError: an unterminated quote, text after a closing quote, or an option part
            without ``=``.
    """
    name, pos = _upto(spec, 0, ":;")
    out = SpecText(name=name.strip())
    if pos < len(spec) and spec[pos] == ":":
        qstart = pos + 1
        out.key, pos = _upto(spec, qstart, "=;")
        out.key = out.key.strip()
        if pos < len(spec) and spec[pos] == "=":
            out.has_eq = True
            while True:
                value, quoted, pos = _value(spec, pos + 1, ",;", who)
                if value or quoted:
                    out.values.append((value, quoted))
                if pos >= len(spec) or spec[pos] == ";":
                    break
        out.qtext = spec[qstart:pos]
    out.option_text = spec[pos:]
    while pos < len(spec):  # spec[pos] == ";"
        start = pos + 1
        key, pos = _upto(spec, start, "=;")
        if pos >= len(spec) or spec[pos] == ";":
            if key.strip():
                raise ValueError(f"{who}: option {key!r} must look like KEY=VALUE")
            continue
        value, quoted, pos = _value(spec, pos + 1, ";", who)
        out.options.append((key.strip(), value, quoted))
    return out


def quote_value(value: str) -> str:
    """``value`` as spec text: in quotes when it holds ``,``, ``;`` or starts with ``"`` or a
    space. Raises ValueError for a value the grammar cannot carry (one holding ``"`` that
    needs quoting)."""
    if not (set(value) & {",", ";"} or value[:1] in (QUOTE, " ")):
        return value
    if QUOTE in value:
        raise ValueError(f"{value!r} holds both a quote and a separator; the spec grammar "
                         "cannot carry it (rename the folder)")
    return f"{QUOTE}{value}{QUOTE}"


def _upto(text: str, start: int, stops: str) -> tuple[str, int]:
    """The text from ``start`` to the first character of ``stops`` (or the end), and its index."""
    end = start
    while end < len(text) and text[end] not in stops:
        end += 1
    return text[start:end], end


def _value(text: str, start: int, stops: str, who: str) -> tuple[str, bool, int]:
    """One value from ``start``: ``(value, quoted, index of the stop or the end)``."""
    lead = start
    while lead < len(text) and text[lead] == " ":
        lead += 1
    if lead >= len(text) or text[lead] != QUOTE:
        raw, end = _upto(text, start, stops)
        return raw.strip(), False, end
    close = text.find(QUOTE, lead + 1)
    if close < 0:
        raise ValueError(f"{who}: unterminated quote in {text!r}: close the value opened at "
                         f"character {lead + 1} with \"")
    rest, end = _upto(text, close + 1, stops)
    if rest.strip():
        raise ValueError(f"{who}: unexpected {rest.strip()!r} after the quoted value "
                         f"{text[lead:close + 1]} in {text!r}")
    return text[lead + 1:close], True, end
