"""Errors that reach the user as one line, never as a traceback."""

import re

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException, limit: int = 300) -> str:
    """The root cause of ``exc`` in one line, named by its type: tools wrap the reason in generic advice, colour
    codes and line breaks."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(ANSI.sub("", str(exc)).split())
    return f"{exc.__class__.__name__}: {text[:limit]}" if text else exc.__class__.__name__


class BenchError(Exception):
    """A problem the user can fix (bad option, unknown name, unreadable file). Exit status 1."""

    exit_code = 1


class UsageError(BenchError):
    """Bad command-line input. Exit status 2, as click's own usage errors."""

    exit_code = 2


class WhereError(UsageError):
    """A --where filter names a parameter or a value that no selected architecture has."""


class DiskFull(BenchError):
    """No room to write (disk full, quota, file size limit): the sweep stops, what is recorded stays."""


class PluginError(BenchError):
    """A plugin did something wrong (bad registration, duplicate name)."""


def check_registration(kind: str, name, plugin: str, registered: dict, make: object) -> None:
    """What every register() refuses: a bad name, a name taken (naming both plugins), a non-callable."""
    import re

    if not isinstance(name, str) or not re.match(r"^[a-z0-9][a-z0-9_.-]*$", name):
        raise PluginError(f"plugin '{plugin}' registered an invalid {kind} name {name!r}")
    if name in registered:
        raise PluginError(
            f"{kind} '{name}' is registered twice: by plugin '{registered[name].plugin}' and by plugin '{plugin}'"
        )
    if not callable(make):
        raise PluginError(f"plugin '{plugin}': the factory of {kind} '{name}' is not callable")


def closest(name: str, choices) -> list[str]:
    """``choices`` ordered by similarity to ``name``, closest first (ties keep their order)."""
    import difflib

    choices = list(choices)

    def score(choice: str) -> float:
        return difflib.SequenceMatcher(None, name.lower(), choice.lower()).ratio()

    return sorted(choices, key=score, reverse=True)


def unknown(kind: str, name: str, choices) -> UsageError:
    """``unknown plugin 'cnn_dropot'; did you mean cnn_dropout? (available: ...)``"""
    ordered = closest(name, choices)
    if not ordered:
        return UsageError(f"unknown {kind} '{name}': none are available")
    return UsageError(f"unknown {kind} '{name}'; did you mean {ordered[0]}? (available: {', '.join(ordered)})")
