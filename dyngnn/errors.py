"""The one exception type that means "the user's input is wrong".

Anything raised as :class:`InputError` names what is wrong and where (a file, a line, a
flag). The CLI prints its message on one line and exits with status 2; every other
exception is a bug in dyngnn and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file, flag, config, store or checkpoint that dyngnn cannot use."""


class SharedInputError(InputError):
    """An InputError that every rank of a job raises with the same message (a check made
    once and broadcast, or made on what every rank shares): rank 0 alone reports it."""
