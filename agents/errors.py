"""How ``lm-envs`` reports a failed command: one line naming the setting and the fix, the traceback on request.

``lm-envs --traceback ...`` (or ``LM_ENVS_TRACEBACK=1``, which torchrun's and the launchers' processes
inherit) shows the full traceback instead, Hydra's included (``HYDRA_FULL_ERROR``).
"""

from __future__ import annotations

import errno
import os
import sys

#: Set (to anything but ``0``) for full tracebacks.
TRACEBACK_ENV = "LM_ENVS_TRACEBACK"
#: Errors of a write that another place or more space fixes.
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
HINT = f"(--traceback or {TRACEBACK_ENV}=1 for the full traceback)"


def want_traceback() -> bool:
    """Whether the user asked for full tracebacks."""
    return os.environ.get(TRACEBACK_ENV, "0") not in ("", "0")


def ask_for_tracebacks() -> None:
    """``--traceback``: full tracebacks here and in every process this one starts."""
    os.environ[TRACEBACK_ENV] = "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; a write that failed names its file and the fix.

    Example:
        >>> one_line(OSError(28, "No space left on device", "/runs/a/metrics.jsonl"))
        'cannot write /runs/a/metrics.jsonl: No space left on device; free space or write elsewhere.'
    """
    while type(err).__name__ == "InterpolationResolutionError" and (err.__cause__ or err.__context__):
        err = err.__cause__ or err.__context__  # a config resolver's own advice (`${required:...}`), unwrapped
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        if err.errno in WRITE_ERRORS:
            return f"cannot write {err.filename}: {err.strerror}; free space or write elsewhere."
        return f"{err.filename}: {err.strerror}."
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    else:
        text = str(err) or type(err).__name__
    if not isinstance(err, (ValueError, OSError, KeyError, FloatingPointError, ImportError)) or not text:
        text = f"{type(err).__name__}: {text}"  # an unexpected error: say what kind
    return " ".join(text.split())


def report(prog: str, err: BaseException) -> int:
    """Print ``err`` as one line on stderr (or re-raise it when tracebacks are wanted); the exit status, 2."""
    if want_traceback():
        raise err
    print(f"{prog}: {one_line(err)} {HINT}", file=sys.stderr)
    return 2
