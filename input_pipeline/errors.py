"""The error a missing dataset raises, importable without TensorFlow.

The training entry point catches it and prints its message as one line, so messages here are a
single line that names the directory expected and what to put there.
"""


class DatasetNotFoundError(FileNotFoundError):
    """The dataset named by `data.source` is not where the config says; the message says what to do."""
