"""The error type for problems the user can fix (bad file, bad value, missing labels)."""


class NanowireError(ValueError):
    """A problem caused by input, with a message that names the input and says what to do.

    The CLI prints these without a traceback; the GUI shows them as notifications.
    """
