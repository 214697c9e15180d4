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
