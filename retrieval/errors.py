"""Errors that are the user's to fix: the CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for (missing folder, bad weights path, wrong index...)."""


class ModelMismatchError(UserError):
    """An index was built by another model than the one asked for."""
