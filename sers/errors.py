"""The one exception type that the CLI turns into a one-line message."""


class SersError(Exception):
    """Bad input or a state the user must fix; the message says what and where.

    The CLI prints ``error: <message>`` and exits with status 1, without a
    traceback. Raise it (or a subclass) from any stage for problems the user
    can act on; let genuine bugs propagate as ordinary exceptions.
    """
