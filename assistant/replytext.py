"""What the model writes, as it should be kept: XGen-7B writes apostrophes (and double
quotes) backslash-escaped, `it\\'s`, as in the string literals of its training data.

On screen nobody sees it: in Markdown a backslash before punctuation is an escape, so
the app renders `\\'` as `'`. But the text is saved, exported to Markdown, copied and
printed as written, and there the backslashes show. `clean_reply` removes them outside
code (fenced blocks and `inline code`), where `'it\\'s'` may be meant.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:.|\n)*?(?<!`)\1(?!`)")
_ESCAPED_QUOTE = re.compile(r"\\(['\"])")


def _outside_code_spans(text: str) -> str:
    out, pos = [], 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_ESCAPED_QUOTE.sub(r"\1", text[pos:span.start()]))
        out.append(span.group(0))
        pos = span.end()
    out.append(_ESCAPED_QUOTE.sub(r"\1", text[pos:]))
    return "".join(out)


def clean_reply(text: str) -> str:
    """`text` with `\\'` and `\\"` unescaped outside code blocks and code spans."""
    if "\\" not in text:
        return text
    lines = text.split("\n")
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in lines:
        opener = _FENCE.match(line)
        if fence is None and opener:
            if prose:
                out.append(_outside_code_spans("\n".join(prose)))
                prose = []
            fence = opener.group(1)[0] * len(opener.group(1))
            out.append(line)
        elif fence is not None:
            out.append(line)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            prose.append(line)
    if prose:
        out.append(_outside_code_spans("\n".join(prose)))
    return "\n".join(out)
