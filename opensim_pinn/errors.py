"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class InputError(Exception):
    """Bad user input (file, option, model/motion mismatch).

    The message is one line that names the problem and what to do about it.
    """


class OpenSimCrash(RuntimeError):
    """An OpenSim step ended its child process abnormally (crash or hard error)."""
