"""The readable text of an HTML page."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

_SKIP_TAGS = {"script", "style", "head", "template", "noscript", "svg", "math", "iframe",
              "object", "canvas", "select"}
_PARAGRAPH_TAGS = {"p", "pre", "blockquote", "table", "ul", "ol", "dl", "section", "article",
                   "header", "footer", "nav", "aside", "main", "figure", "hr", "form", "fieldset",
                   "address", "details", "h1", "h2", "h3", "h4", "h5", "h6", "body", "html"}
_LINE_TAGS = {"div", "li", "tr", "br", "dt", "dd", "caption", "figcaption", "summary", "option",
              "legend", "thead", "tbody", "tfoot", "center", "textarea"}
_CELL_TAGS = {"td", "th"}
_WS = re.compile(r"\s+")


class _HTMLText(HTMLParser):
    """Readable text from HTML, in one pass and without recursion (any depth is fine)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._skip: list[str] = []  # open elements whose content is dropped
        self._pre = 0
        self._newlines = 2  # trailing newlines in the output (2 = nothing to separate yet)
        self._space = True  # output ends with a space or a line break

    # writing -------------------------------------------------------------------------
    def _break(self, n: int) -> None:
        if self._newlines >= n:
            return
        while self._out and self._out[-1].endswith((" ", "\t")) and not self._pre:
            last = self._out.pop().rstrip(" \t")
            if last:
                self._out.append(last)
                break
        self._out.append("\n" * (n - self._newlines))
        self._newlines = n
        self._space = True

    def _write(self, s: str) -> None:
        if not s:
            return
        self._out.append(s)
        stripped = s.rstrip("\n")
        trailing = len(s) - len(stripped)
        self._newlines = self._newlines + trailing if not stripped else trailing
        self._space = s[-1].isspace()

    # parser callbacks -----------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs) -> None:
        if self._skip:
            if tag in _SKIP_TAGS:
                self._skip.append(tag)
            elif tag == "body" or (tag in _PARAGRAPH_TAGS | _LINE_TAGS and self._skip == ["head"]):
                self._skip.clear()  # a <head> left open: the body starts here
            else:
                return
            if self._skip:
                return
        if tag in _SKIP_TAGS:
            self._skip.append(tag)
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
            if tag == "pre":
                self._pre += 1
            elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
                self._write("#" * int(tag[1]) + " ")
        elif tag in _LINE_TAGS:
            self._break(1)
            if tag == "li":
                self._write("- ")
        elif tag in _CELL_TAGS:
            if not self._newlines:
                self._write(" | ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self.handle_data(f" [{alt.strip()}] ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:  # <svg/> has no content to skip
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _PARAGRAPH_TAGS:
            if tag == "pre" and self._pre:
                self._pre -= 1
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip or not data:
            return
        if self._pre:
            self._write(data.replace("\r\n", "\n").replace("\r", "\n"))
            return
        data = _WS.sub(" ", data)
        if data.startswith(" ") and self._space:
            data = data[1:]
        if data:
            self._write(data)

    def text(self) -> str:
        return _tidy("".join(self._out))


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n" if text.strip() else ""


def html_to_text(html: str) -> str:
    """The readable text of an HTML page: no script/style/head, blocks on their own lines."""
    parser = _HTMLText()
    try:
        # One feed: fed in pieces, a tag or comment left open re-scans everything buffered
        # since it opened at every piece (quadratic: minutes for a 50 MB page).
        parser.feed(html)
        parser.close()
        return parser.text()
    except Exception:  # noqa: BLE001 - html.parser can choke on odd markup: strip tags crudely
        text = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
        text = re.sub(r"(?i)<(br|/p|/div|/li|/tr|/h[1-6]|p|div|li|tr|h[1-6])\b[^>]*>", "\n", text)
        text = unescape(re.sub(r"<[^>]*>", " ", text))
        text = "\n".join(_WS.sub(" ", line).strip() for line in text.split("\n"))
        return _tidy(text)
