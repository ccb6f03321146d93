"""The user's documents as plain text: text, Markdown, source code, HTML, PDF, DOCX.

One module per concern:

- ``model``: :class:`Document`, the extracted text and where its spans are (lines, pages);
- ``kinds``: the kind of a file, from its name or its first bytes;
- ``decoding``: bytes to text (encodings, newlines, control characters);
- ``html``, ``pdf``, ``docx``: the text of each format;
- ``errors``: the one-line messages the loaders share;
- ``mislabel``: a file whose name says PDF or DOCX but whose bytes are something else;
- ``load``: ``load_document`` / ``load_stdin`` / ``document_from_bytes`` and the size limit;
- ``large``: text files over the size limit, read window by window for summaries.
"""

from assistant.documents.html import html_to_text
from assistant.documents.kinds import KINDS, SUPPORTED, kind_from_name
from assistant.documents.large import (WINDOW_BYTES, LargeTextFile, first_look, open_for_summary,
                                       open_stdin_for_summary, over_load_limit)
from assistant.documents.load import DEFAULT_MAX_BYTES, document_from_bytes, load_document, load_stdin
from assistant.documents.model import Document

__all__ = ["DEFAULT_MAX_BYTES", "KINDS", "SUPPORTED", "WINDOW_BYTES", "Document", "LargeTextFile",
           "document_from_bytes", "first_look", "html_to_text", "kind_from_name", "load_document", "load_stdin",
           "open_for_summary", "open_stdin_for_summary", "over_load_limit"]
