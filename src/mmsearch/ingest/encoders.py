"""The encoders of a build, by role, and what a manifest records about them."""

from __future__ import annotations

from dataclasses import dataclass

from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.manifest import EncoderDescription


@dataclass
class EncoderSet:
    """The encoders of a build by role, with the specs they were created from."""

    specs: dict[str, str]
    encoders: dict[str, Encoder]

    @classmethod
    def load(cls, specs: dict[str, str]) -> EncoderSet:
        return cls(specs, {role: create_encoder(spec) for role, spec in specs.items()})

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
