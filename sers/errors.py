"""The one exception type that the CLI turns into a one-line message."""


class SersError(Exception):
    """Bad input or a state the user must fix; the message says what and where.

    The CLI prints ``error: <message>`` and exits with status 1, without a
    traceback. Raise it (or a subclass) from any stage for problems the user
    can act on; let genuine bugs propagate as ordinary exceptions.
    """


def describe_os_error(exc: OSError) -> str:
    """What a failed file operation means for the user, in words, naming the file."""
    import errno

    where = exc.filename or "the output"
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
            errno.EROFS: "read-only file system", errno.ENOENT: "no such file or folder (moved or deleted "
            "while sers ran?)", errno.ENOTDIR: "part of the path is a file, not a folder",
            errno.EISDIR: "a folder is in the way of a file"}.get(exc.errno, (exc.strerror or str(exc)).lower())
    return f"{what} while writing or reading {where}"
