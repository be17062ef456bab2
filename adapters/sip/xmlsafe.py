"""XML as SIPREC clients really send it: parsed safely, repaired when it is not well-formed.

Field SRCs emit rs-metadata that a strict parser refuses: a raw ``&`` in a display name, an
unescaped ``<sip:...>`` inside ``apkt:request-uri``, an attribute (often a namespace
declaration) given twice, a prefix never declared, bytes that are not UTF-8, junk after the
root. :func:`parse_xml` tries the strict parser first, then repairs what it recognises, then
falls back to a tolerant tree builder, and says which repairs it made. What it never does:
expand entities, read a DTD or fetch anything (a DTD or entity declaration is refused before
any parsing, and the strict pass goes through defusedxml).

Element tags come back as the parser saw them (``{ns}local`` or ``prefix:local``); compare
them with :func:`local`, which drops namespace and prefix and folds case and ``-``/``_``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import NamedTuple
from xml.etree.ElementTree import Element
from xml.parsers import expat

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from capture.errors import RemoteProtocolError

_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.I)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_RAW_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")
_URI_IN_ANGLES = re.compile(r"<((?:sips?|tel|urn|https?|mailto):[^<>\s]*)>", re.I)
_START_TAG = re.compile(r"<([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)(\s[^<>]*?)?(/?)>")
_ATTRIBUTE = re.compile(r"([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)\s*=\s*(\"[^\"]*\"|'[^']*')")
_PREFIX_USE = re.compile(r"</?([A-Za-z_][\w.\-]*):[A-Za-z_]|\s([A-Za-z_][\w.\-]*):[A-Za-z_][\w.\-]*\s*=")
_PREFIX_DECLARED = re.compile(r"xmlns:([A-Za-z_][\w.\-]*)\s*=")
UNDECLARED_NS = "urn:vcon-capture:undeclared:"
"Namespace given to a prefix the document used without declaring it."


def local(tag: str) -> str:
    """``{urn:x}Participant_ID`` / ``tns:participant-id`` -> ``participant_id``."""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower().replace("-", "_")


class Parsed(NamedTuple):
    root: Element
    repairs: list[str]
    "What had to be repaired (empty: the document was well-formed)."
    text: str
    "The document as parsed (after repairs)."
    spans: dict[int, tuple[int, int]]
    """id(element) -> (start, end) of its text in ``text``, for every element, when the
    strict parser read it (a block can then be kept exactly as the SRC wrote it)."""


def parse_xml(data: bytes, what: str = "XML") -> Parsed:
    """The document; RemoteProtocolError when refused or beyond repair."""
    repairs: list[str] = []
    text = _decode(data, repairs)
    if _FORBIDDEN.search(text):
        raise RemoteProtocolError(f"{what} has a DTD or entity declaration (refused)", excerpt=data)
    text = _DECLARATION.sub("", text, count=1).strip()
    if not text.startswith("<"):
        raise RemoteProtocolError(f"{what} does not start with an element", excerpt=data)
    root = _strict(text)
    if root is None:
        for name, repair in _REPAIRS:
            fixed = repair(text)
            if fixed != text:
                repairs.append(name)
                text = fixed
        root = _strict(text)
    if root is not None:
        return Parsed(root, repairs, text, _spans(root, text))
    root = _tolerant(text)
    if root is None:
        raise RemoteProtocolError(f"{what} is not XML, even read leniently", excerpt=data)
    repairs.append("read leniently (not well-formed)")
    return Parsed(root, repairs, text, {})


def _spans(root: Element, text: str) -> dict[int, tuple[int, int]]:
    """Where each element of a well-formed ``text`` starts and ends (a second expat pass: the
    text has no DTD, so nothing can expand)."""
    data = text.encode()
    starts: list[int] = []
    open_: list[int] = []
    spans: dict[int, tuple[int, int]] = {}
    order: list[int] = []
    parser = expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        open_.append(len(starts))
        starts.append(parser.CurrentByteIndex)

    def end(name: str) -> None:
        index = open_.pop()
        close = data.index(b">", parser.CurrentByteIndex) + 1
        spans[index] = (starts[index], close)
        order.append(index)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError:
        return {}
    elements = list(root.iter())
    if len(elements) != len(starts):
        return {}
    return {id(el): (len(data[:a].decode()), len(data[:b].decode())) for el, (a, b) in
            ((el, spans[i]) for i, el in enumerate(elements))}  # fmt: skip


def _decode(data: bytes, repairs: list[str]) -> str:
    data = data.lstrip(b"\xef\xbb\xbf \t\r\n\x00").rstrip(b"\x00 \t\r\n")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", "replace")
        repairs.append("not UTF-8 (read as Windows-1252)")
    if _CONTROL.search(text):
        text = _CONTROL.sub("", text)
        repairs.append("control characters removed")
    return text


def _strict(text: str) -> Element | None:
    try:
        root: Element = ElementTree.fromstring(text, forbid_dtd=True)
        return root
    except DefusedXmlException as exc:
        raise RemoteProtocolError(f"XML refused: {type(exc).__name__}") from None
    except (ElementTree.ParseError, ValueError):
        return None


def _escape_uri(match: re.Match[str]) -> str:
    return f"&lt;{match.group(1)}&gt;"


def _dedupe_attributes(text: str) -> str:
    def fix(match: re.Match[str]) -> str:
        attrs = match.group(2) or ""
        seen: set[str] = set()
        kept = []
        for name, value in _ATTRIBUTE.findall(attrs):
            if name not in seen:
                seen.add(name)
                kept.append(f"{name}={value}")
        if len(kept) == len(_ATTRIBUTE.findall(attrs)):
            return match.group(0)
        return f"<{match.group(1)}{''.join(' ' + k for k in kept)}{match.group(3)}>"

    return _START_TAG.sub(fix, text)


def _declare_prefixes(text: str) -> str:
    used = {a or b for a, b in _PREFIX_USE.findall(text)} - {"xml", "xmlns"}
    missing = sorted(used - set(_PREFIX_DECLARED.findall(text)))
    first = _START_TAG.search(text)
    if not missing or first is None:
        return text
    declarations = "".join(f' xmlns:{p}="{UNDECLARED_NS}{p}"' for p in missing)
    insert = first.end(1)
    return text[:insert] + declarations + text[insert:]


def _cut_after_root(text: str) -> str:
    first = _START_TAG.search(text)
    if first is None or first.group(3):
        return text
    end = text.rfind(f"</{first.group(1)}")
    close = text.find(">", end) if end >= 0 else -1
    return text[: close + 1] if close >= 0 and text[close + 1 :].strip() else text


_REPAIRS = (
    ("raw '&' escaped", lambda t: _RAW_AMP.sub("&amp;", t)),
    ("unescaped <uri> escaped", lambda t: _URI_IN_ANGLES.sub(_escape_uri, t)),
    ("repeated attribute dropped", _dedupe_attributes),
    ("undeclared prefix declared", _declare_prefixes),
    ("text after the root element dropped", _cut_after_root),
)


class _TreeBuilder(HTMLParser):
    """A forgiving element builder: unclosed elements close with their parent, stray end tags
    are ignored. It expands only the predefined and numeric character references."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root: Element | None = None
        self.stack: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs})
        if self.stack:
            self.stack[-1].append(el)
        elif self.root is None:
            self.root = el
        else:
            return
        self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.stack:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self.stack:
            return
        el = self.stack[-1]
        if len(el):
            el[-1].tail = (el[-1].tail or "") + data
        else:
            el.text = (el.text or "") + data


def _tolerant(text: str) -> Element | None:
    builder = _TreeBuilder()
    try:
        builder.feed(text)
        builder.close()
    except AssertionError:
        # Python 3.11's html.parser asserts on a marked section it cannot name ("<![<!x"): found
        # by the metadata fuzz target. Nothing usable was read.
        return None
    return builder.root
