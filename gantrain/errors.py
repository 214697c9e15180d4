"""The one exception type for mistakes a user can fix; the CLI prints it as a single line."""


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint) and how to fix it."""
