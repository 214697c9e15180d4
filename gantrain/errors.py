"""Exceptions the CLI turns into one line and an exit status, instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint) and how to fix it. Exit status 2."""


class TrainingDiverged(Exception):
    """Losses became NaN or infinite; the last good checkpoint is kept. Exit status 1."""


class DiskFull(Exception):
    """The disk filled up while a checkpoint was written; the partial file is removed. Exit status 1."""


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped the run after a step, with a checkpoint written. Exit status 128+signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def first_line(err: BaseException, limit: int | None = None) -> str:
    """An error's first non-blank line (at most `limit` characters), or its type's name when it says nothing:
    what a one-line message quotes of a library's multi-line error."""
    line = next((text.strip() for text in str(err).splitlines() if text.strip()), type(err).__name__)
    return line[:limit] if limit else line
