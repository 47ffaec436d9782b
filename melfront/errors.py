"""The errors melfront raises on purpose, all under one base class.

A user (or the CLI) can catch every deliberate failure with ``except melfront.MelfrontError``; the
message is one line naming the file or argument and the cause. Subclasses also derive from the
built-in exception a caller would have caught before (``ValueError``, ``OSError``,
``FileNotFoundError``, ``RuntimeError``, ``FloatingPointError``), so existing ``except ValueError`` code keeps
working. Nothing in melfront raises a bare ``ValueError`` or ``RuntimeError`` on purpose
(``tests/test_conventions.py`` walks the source).

>>> from melfront.errors import MelfrontError, ParameterError
>>> issubclass(ParameterError, ValueError) and issubclass(ParameterError, MelfrontError)
True
>>> str(ParameterError("n_mels must be a positive integer, got 2.5"))
'n_mels must be a positive integer, got 2.5'
"""
from __future__ import annotations

__all__ = ["MelfrontError", "ParameterError", "AudioError", "DataError", "DataNotFoundError", "MetadataError",
           "DownloadError", "UnsafeArchiveError", "StudyError", "CheckpointError", "TrainingError", "DivergenceError",
           "PathError", "ModelStateError"]


class MelfrontError(Exception):
    """Base class of every error melfront raises on purpose (bad input, bad settings, bad files)."""


class ParameterError(MelfrontError, ValueError):
    """An argument or setting of the wrong type or out of range; the message names it."""


class AudioError(MelfrontError, ValueError):
    """A file that cannot be used as audio. The message names the file and the cause.

    >>> e = AudioError("clip.wav", "empty file (0 bytes)")
    >>> (e.path, e.cause, str(e))
    ('clip.wav', 'empty file (0 bytes)', 'clip.wav: empty file (0 bytes)')
    """

    def __init__(self, path, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.cause))


class DataError(MelfrontError, ValueError):
    """A data set that cannot be used as asked: missing folder, no clips, unknown fold, too few clips."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set root, study folder, checkpoint or file that does not exist.

    Caught by ``except MelfrontError`` (and ``DataError``) as well as by ``except FileNotFoundError``
    (or ``OSError``); the message names the path and, where there is one, how to get it.

    >>> e = DataNotFoundError("esc50: root folder '/no/such' does not exist")
    >>> isinstance(e, MelfrontError), isinstance(e, FileNotFoundError), str(e)
    (True, True, "esc50: root folder '/no/such' does not exist")
    """


class MetadataError(DataError):
    """Metadata that cannot be used: missing columns, unknown folds, labels that disagree with file names.

    The message names the metadata file and, where it applies, the row (1-based line number in the file).

    >>> str(MetadataError("meta/esc50.csv", "no 'fold' column", row=1))
    "meta/esc50.csv, line 1: no 'fold' column"
    """

    def __init__(self, path, message: str, row: int | None = None):
        self.path, self.row, self.message = str(path), row, message
        where = f"{self.path}, line {row}" if row is not None else self.path
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        return (type(self), (self.path, self.message, self.row))


class DownloadError(MelfrontError, OSError):
    """A transfer that failed or whose size/checksum does not match."""


class UnsafeArchiveError(DataError):
    """An archive member that would be written outside the target folder, is a link or device file, or
    expands beyond the size limits."""


class StudyError(MelfrontError):
    """A study that cannot run as configured: a bad config field, a locked or foreign results store."""


class CheckpointError(MelfrontError):
    """A checkpoint file that is missing, damaged, of another format, or whose stored config is unusable."""


class TrainingError(MelfrontError):
    """Training that cannot proceed (no clips left, no classes, a model that cannot take the input)."""


class DivergenceError(TrainingError, FloatingPointError):
    """Training diverged: the loss or a parameter became NaN or infinite."""


class ModelStateError(MelfrontError, RuntimeError):
    """A model used before it is ready, e.g. a prototypical network asked for logits before it has prototypes."""


class PathError(MelfrontError, OSError):
    """An operating-system error on a user's own path (read-only folder, full disk, a directory where a file
    was asked for): the message names the path and the errno's meaning, on one line.

    >>> import errno
    >>> str(PathError.from_os_error(OSError(errno.ENOSPC, "No space left on device"), "out/report.md"))
    'out/report.md: no space left on device (ENOSPC)'
    >>> str(PathError.from_os_error(PermissionError(13, "Permission denied", "/ro/x")))
    '/ro/x: permission denied (EACCES)'
    """

    @classmethod
    def from_os_error(cls, exc: OSError, path=None, doing: str | None = None) -> "PathError":
        """The one-line error of ``exc``: ``path`` (else the exception's own file name), what failed (``doing``,
        e.g. ``"cannot write the report"``) and the errno's meaning with its symbolic name."""
        import errno as _errno
        import os as _os
        if isinstance(exc, PathError):
            return exc
        where = path if path is not None else (exc.filename if exc.filename is not None else None)
        if exc.errno == _errno.EEXIST and where is not None and _os.path.lexists(where) \
                and not _os.path.isdir(where):  # mkdir on a file: say what is in the way
            cause = "exists and is not a folder (EEXIST)"
        elif exc.errno:
            cause = f"{_os.strerror(exc.errno)[:1].lower()}{_os.strerror(exc.errno)[1:]} " \
                    f"({_errno.errorcode.get(exc.errno, exc.errno)})"
        else:
            cause = " ".join(str(exc).split()) or type(exc).__name__
        if exc.filename2 is not None:
            cause += f" (and {exc.filename2})"
        text = f"{doing}: {cause}" if doing else cause
        err = cls(f"{where}: {text}" if where is not None else text)
        err.errno, err.filename, err.strerror = exc.errno, str(where) if where is not None else None, cause
        return err

    def __str__(self):
        return self.args[0] if self.args else ""
