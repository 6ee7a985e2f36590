"""The one exception users see: a message that says what went wrong and what to do."""


class LabError(RuntimeError):
    """A problem the user can fix (a port taken, no Redis, a bad option). Shown as one line."""
