"""The one exception type that reaches the user as a one-line message."""


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix.

    The CLI prints it as a single line on stderr and exits with status 2, without a traceback.
    """
