"""Typed errors. The library raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations

__all__ = [
    "ArchiverError",
    "InputError",
    "OutputExistsError",
    "NotAnArchiveError",
    "FormatVersionError",
    "MissingBaseError",
    "CorruptArchiveError",
    "EntryNotFoundError",
    "MissingDependencyError",
]


class ArchiverError(Exception):
    """Base class of every error the archiver raises on purpose."""


class InputError(ArchiverError):
    """The input to pack (folder, file, option) cannot be used."""


class OutputExistsError(ArchiverError):
    """An output file exists and overwriting was not asked for."""


class NotAnArchiveError(ArchiverError):
    """The file is not an .nca archive (no HDF5 container or wrong magic)."""


class FormatVersionError(ArchiverError):
    """The archive's format_version is not one this reader understands."""


class CorruptArchiveError(ArchiverError):
    """A checksum failed or a structure in the archive is inconsistent."""


class MissingBaseError(ArchiverError):
    """The archive stores its model as a difference from a base codec this archiver does not ship
    (or whose shipped file is not the one the archive names)."""


class EntryNotFoundError(ArchiverError, KeyError):
    """A name or glob given to extract, or a name given to ``archiver.open(...).read``, matched no entry.

    Also a :class:`KeyError` (``except KeyError`` works as for a dict); the message is printed as
    is, not quoted as KeyError's would be.
    """

    def __str__(self) -> str:
        return Exception.__str__(self)


class MissingDependencyError(ArchiverError):
    """An optional dependency (e.g. torch for pack) is not installed."""
