"""User-facing errors: main.py prints their message as one line and exits non-zero."""


class UserError(Exception):
    """A problem with the user's config, data or workdir (not a bug): no traceback is shown."""
