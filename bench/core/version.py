"""cnnbench's version, from its installed metadata: a leaf module, so that any stage can name it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cnnbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
