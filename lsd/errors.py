"""The one exception type for mistakes a user can make.

The CLI turns a UserError into a single line on stderr and a non-zero exit, without a traceback.
Anything else that escapes is a bug in lsd and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, files or options; the message is one line naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
