"""The one exception type the command line turns into a one-line error."""

from __future__ import annotations

import os


class XGenError(Exception):
    """A problem the user can act on: bad input, missing file, wrong model.

    The message is shown as is, on one line, with no traceback.
    """


def unsafe_pickle_error(shard: str | os.PathLike, what: str) -> XGenError:
    """The refusal of a shard whose pickle would call something other than tensor code.
    Never a hint to load it unsafely: such a file is what a malicious upload looks like."""
    return XGenError(f"{shard}: refused as unsafe: its pickle calls {what}, which is not part of a tensor "
                     "checkpoint, and loading it could run code; use a copy from a source you trust "
                     "(or its .safetensors files)")
