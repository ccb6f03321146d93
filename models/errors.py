"""The one exception type the command line turns into a one-line error."""


class XGenError(Exception):
    """A problem the user can act on: bad input, missing file, wrong model.

    The message is shown as is, on one line, with no traceback.
    """
