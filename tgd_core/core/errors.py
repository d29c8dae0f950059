"""The project's user-facing error type: one clear message, no traceback for the user."""


class TGDError(ValueError):
    """Bad input, configuration or file; the message says what is wrong and how to fix it."""
