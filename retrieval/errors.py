"""Errors that are the user's to fix: the CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for (missing folder, bad weights path, wrong index...)."""


class ImageError(Exception):
    """An image that cannot be used; the message is the reason, short enough for one line."""


class ModelMismatchError(UserError):
    """An index was built by another model than the one asked for."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (a database error's driver message when it has
    one), at most ``limit`` characters; the exception's type name when it says nothing."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
