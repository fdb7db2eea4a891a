"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix.

    The CLI prints it as a single line on stderr and exits with status 2, without a traceback.
    """


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception's text on one line (whitespace collapsed), at most `limit` characters, for
    quoting inside a UserError; its type name when it has no text."""
    return " ".join(str(error).split())[:limit] or type(error).__name__
