"""Quieting tools that print from C++ as well as Python (exporters, NNCF, compilers) while they run."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings


@contextlib.contextmanager
def silenced():
    """Exporters print graphs and progress from C++ as well as Python: silence both while they run."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
