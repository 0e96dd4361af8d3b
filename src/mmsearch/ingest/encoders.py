"""The encoders of a build, by role, and what a manifest records about them."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmsearch.encoders.base import Encoder, create_encoder, resolve_spec
from mmsearch.manifest import EncoderDescription


@dataclass
class EncoderSet:
    """The encoders of a build by role, with the specs they were created from."""

    specs: dict[str, str]
    encoders: dict[str, Encoder]
    # Why a spec that left a choice open (``minilm:auto``) became the one in ``specs``.
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, specs: dict[str, str]) -> EncoderSet:
        """Specs resolved first, so the manifest names the encoder that really ran."""
        resolved = {role: resolve_spec(spec) for role, spec in specs.items()}
        concrete = {role: spec for role, (spec, _) in resolved.items()}
        notes = {role: note for role, (_, note) in resolved.items() if note}
        return cls(concrete, {role: create_encoder(s) for role, s in concrete.items()}, notes)

    def get(self, role: str) -> Encoder | None:
        return self.encoders.get(role)

    def describe(self) -> dict[str, EncoderDescription]:
        """What the manifest records; two builds with equal descriptions share vectors."""
        return {
            role: EncoderDescription(
                spec=self.specs[role],
                name=encoder.name,
                version=encoder.version,
                dim=encoder.dim,
                modalities=sorted(encoder.modalities),
                note=self.notes.get(role),
            )
            for role, encoder in self.encoders.items()
        }


def image_roles(encoders: EncoderSet) -> list[str]:
    """Roles whose vectors come from the item's images: stored one vector per image."""
    return [
        role
        for role, encoder in encoders.encoders.items()
        if role != "text" and "image" in encoder.modalities
    ]
