"""Typed, immutable run settings: one frozen dataclass per kind of run, one way to change one.

`training.FitSettings` (how a classifier is fitted), `training.ScratchRecipe` (the from-scratch
network and its fit settings, `training.SCRATCH_RECIPE`) and `transfer.TransferSettings` all
derive from `Settings`, so each lists its fields and defaults once, `override` rejects a field it
does not have (naming the allowed ones), and a run's results record `as_json()` of the very
object it ran with instead of restating its arguments.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the lab's settings dataclasses: checked overrides and a JSON-ready form."""

    @classmethod
    def field_names(cls):
        """The names of the fields, in declaration order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def override(self, changes=None, **more):
        """A copy with some fields changed: `recipe.override(epochs=5)` or `override({...})`.

        Args:
            changes: A mapping of field names to new values (e.g. a parsed `--recipe` JSON).
            **more: More fields to change; they win over `changes`.

        Returns:
            A new object of the same type; this one is unchanged (it is frozen).

        Raises:
            ValueError: If a name is not a field, naming the allowed fields.
        """
        changes = {**(changes or {}), **more}
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"Unknown {type(self).__name__} fields {unknown}; allowed: "
                f"{sorted(self.field_names())}. Received: "
                + ", ".join(f"{name}={changes[name]!r}" for name in unknown)
            )
        return dataclasses.replace(self, **changes)

    def as_json(self, names=None):
        """The fields as a JSON-ready dict (tuples become lists, as they read back).

        Args:
            names: Only these fields (default: all).
        """
        values = dataclasses.asdict(self)
        return {name: _plain(values[name]) for name in (names or self.field_names())}


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
