"""The MindSpore side's user-facing error: the CLIs print it as one `error: ...` line, exit 2."""


class UserError(Exception):
    """A problem with the user's config, data, weights or workdir (not a bug): no traceback."""
