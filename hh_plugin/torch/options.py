"""Checks of module options that name a model's variables or parameters."""

from __future__ import annotations

from typing import Sequence, Tuple


def checked_names(value, allowed: Sequence[str], option: str, what: str, model_name: str,
                  example: str) -> Tuple[str, ...]:
    """``value`` (a name or a sequence of names) as a tuple, each one of ``allowed``;
    ``TypeError`` for anything but strings, ``ValueError`` naming an unknown one and the
    ``allowed`` names (``what``: 'state variable', 'parameter'; ``example``: how a valid
    value looks, for the message)."""
    names = (value,) if isinstance(value, str) else value
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(f"{option} must be {example}, got {value!r}") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{option}: names must be strings, got {name!r}")
        if name not in allowed:
            raise ValueError(f"{option}: unknown {what} {name!r}; model {model_name!r} has "
                             f"{', '.join(allowed)}")
    return names
