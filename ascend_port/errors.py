"""The MindSpore side's user-facing errors: the CLIs print them as one `error: ...` line, exit 2."""

import argparse
import sys

# One class on both sides: a problem with the user's config, data, weights or workdir (not a
# bug), printed as one line; train_lib.errors imports nothing.
from train_lib.errors import UserError

__all__ = ["ArgumentParser", "UserError"]


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage mistake printed as main.py prints one: `error: ...`, exit 2."""

    def error(self, message: str):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
