"""The errors a user can cause and fix; entry points print them without a traceback.

Every message names the cause and the fix. ``cli.main_guard`` prints them as one
``error: ...`` line and exits 1.
"""


class UserError(Exception):
    """Bad input or an unusable resource that the user can put right."""


class ConfigError(UserError):
    """A configuration value is missing, mistyped or out of range."""


class MissingInputError(UserError):
    """A file or folder a step reads does not exist yet."""


class DataError(UserError):
    """A data file is unreadable, damaged, or disagrees with the configuration."""


class StoreError(UserError):
    """The MLflow tracking target cannot be used: unreachable, unwritable, broken."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt for SIGINT."""
