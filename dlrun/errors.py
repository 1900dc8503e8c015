"""The one exception type for user mistakes: cli.py prints it as one line and exits 2."""


class DlrunError(Exception):
    """A user mistake (bad config value, missing data, bad resume path): say what was given, what is allowed."""
