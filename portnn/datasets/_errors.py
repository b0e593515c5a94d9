"""The error raised by the dataset loaders."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset could not be found, downloaded, parsed or verified.

    The message names the file (or the directories searched) and the problem,
    and where it makes sense, how to fix it.
    """
