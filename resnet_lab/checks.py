"""Argument checks shared by every module: one message shape, `Received: name=value`."""

import numbers


def check_choice(argument, value, allowed):
    """Raise `ValueError` unless `value` is one of `allowed`."""
    if value not in allowed:
        options = ", ".join(repr(option) for option in allowed)
        raise ValueError(f"`{argument}` must be one of {options}. Received: {argument}={value!r}")
    return value


def is_positive_int(value):
    """True for an integer >= 1 (Python or NumPy), False for `bool` and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive_int(argument, value):
    """Raise `ValueError` unless `value` is an integer >= 1 (`True` is not one)."""
    if not is_positive_int(value):
        raise ValueError(f"`{argument}` must be a positive integer. Received: {argument}={value!r}")
    return int(value)


def is_count(value):
    """A non-negative integer (Python or NumPy), and not a `bool`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0
