"""The errors a user can cause and fix; entry points print them without a traceback."""


class UserError(Exception):
    """Bad input: a config value, a data file, an unreachable source."""


class ConfigError(UserError):
    """A configuration value is missing, mistyped or out of range."""
