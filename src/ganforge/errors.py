"""The one exception type for a user's mistake: the CLI prints its message, never a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a flag, a file). The message names the fix."""
