"""Errors that reach the user as one clear line, never as a traceback."""

from __future__ import annotations

from pathlib import Path

EXIT_USAGE_OR_CONFIG = 2  # bad configuration, bad AWS file, bad arguments
EXIT_FAILURE = 1  # a runtime failure (daemon not reachable, kernel refused, ...)


class CgwdError(Exception):
    """Base of all errors cgwd reports to users. The message must never contain a secret."""

    exit_code = EXIT_FAILURE


class ConfigError(CgwdError):
    """A configuration or AWS file is invalid.

    Rendered as ``FILE:LINE: message`` (or ``FILE: ELEMENT: message``) so an admin can jump
    straight to the place.
    """

    exit_code = EXIT_USAGE_OR_CONFIG

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        element: str | None = None,
    ) -> None:
        self.message = message
        self.source = str(source) if source is not None else None
        self.line = line
        self.element = element
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.source:
            where.append(self.source if self.line is None else f"{self.source}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.element:
            where.append(self.element)
        return ": ".join([*where, self.message])

    def located(self, source: str | Path) -> ConfigError:
        """This error with its source file set (importers parse text, callers know the path)."""
        if self.source is not None:
            return self
        return ConfigError(self.message, source=source, line=self.line, element=self.element)
