"""Perspective attribute names <-> the served bundle's labels, and the languages it serves.

The map is the bundle's (`perspective_attributes` in metadata.json; bundle.py
owns it and its Jigsaw default): nothing here names an attribute or a label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from toxic_service.bundle import BundleMetadata
from toxic_service.perspective.errors import invalid_argument


@dataclass(frozen=True)
class AttributeMap:
    to_label: Mapping[str, str]  # attribute -> label, in the bundle's order
    languages: tuple[str, ...]  # lower case, as the bundle declares them

    @classmethod
    def from_metadata(cls, meta: BundleMetadata) -> AttributeMap:
        return cls(to_label=dict(meta.perspective_attributes or {}), languages=tuple(x.lower() for x in meta.languages))

    @property
    def supported(self) -> tuple[str, ...]:
        return tuple(self.to_label)

    def resolve(self, requested: Mapping[str, object], drop_unsupported: bool) -> list[tuple[str, str]]:
        """(attribute, label) for each requested attribute the bundle serves, in request order.

        An attribute the bundle does not serve is INVALID_ARGUMENT naming it and
        listing the supported ones, unless `drop_unsupported` (then it is left out).
        """
        served: list[tuple[str, str]] = []
        for name in requested:
            label = self.to_label.get(name)
            if label is not None:
                served.append((name, label))
            elif not drop_unsupported:
                raise invalid_argument(
                    f"Requested attribute {name} is not supported by the served model; supported attributes: "
                    f"{', '.join(self.supported) or 'none'} (or set dropUnsupportedAttributes to leave it out)",
                    field=f"requestedAttributes.{name}",
                )
        return served

    def unsupported_languages(self, languages: list[str]) -> list[str]:
        """The requested languages the bundle does not serve (compared without case, as language tags are)."""
        return [x for x in languages if x.lower() not in self.languages]
