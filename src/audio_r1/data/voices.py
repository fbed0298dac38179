"""espeak-ng voices, split so that dev and test speakers are never heard in training.

A voice id is ``"{accent}+{variant}"`` (e.g. ``"en-us+m3"``): the accent is an English espeak-ng voice and
the variant a timbre file from ``espeak-ng-data/voices/!v``. Both halves are partitioned by split, so every
test voice differs from every training voice in accent *and* timbre. The partition is fixed (it does not
depend on the seed), so any two suites agree on which speakers are held out. Near-identical variant files
(``steph``/``steph2``, ``iven``/``iven2``, ``Hugo``/``Henrique``, ``anika``/``anikaRobot``...) sit in the same
split or are left out; whispering and pitch-flat variants are left out because their F0 cannot be measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "dev", "test")

ACCENTS: dict[str, tuple[str, ...]] = {
    "train": ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland"),
    "dev": ("en-gb-x-gbcwmd",),
    "test": ("en-029", "en-us-nyc", "en-gb-x-gbclan"),
}

# variants whose default F0 is high (about 190-270 Hz at -p 50); the rest are low (80-130 Hz)
HIGH_VARIANTS: dict[str, tuple[str, ...]] = {
    "train": ("f1", "f2", "f3", "Alicia", "Annie", "belinda", "linda", "grandma", "shelby"),
    "dev": ("f4", "steph"),
    "test": ("f5", "Andrea", "anika", "aunty"),
}
LOW_VARIANTS: dict[str, tuple[str, ...]] = {
    "train": ("m1", "m2", "m3", "m4", "m5", "Andy", "AnxiousAndy", "Gene", "Gene2", "Jacky", "Lee", "Michael",
              "adam", "boris", "caleb", "croak", "edward", "edward2", "iven", "klatt", "klatt2", "klatt3", "max",
              "norbert", "pablo", "paul", "travis", "Storm", "kaukovalta", "RicishayMax"),
    "dev": ("m6", "Mike", "john", "sandro", "rob", "antonio"),
    "test": ("m7", "m8", "Denis", "Diogo", "Henrique", "Hugo", "Mario", "benjamin", "ed", "gustave", "marcelo",
             "michel", "miguel", "pedro", "quincy", "robert", "victor"),
}


@dataclass(frozen=True)
class VoicePool:
    """The accents and timbre variants one split may use."""

    accents: tuple[str, ...]
    high: tuple[str, ...]
    low: tuple[str, ...]

    @classmethod
    def for_split(cls, split: str) -> VoicePool:
        """The fixed pool of ``split`` ("train", "dev" or "test")."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return cls(ACCENTS[split], HIGH_VARIANTS[split], LOW_VARIANTS[split])

    def pick(self, rng: np.random.Generator, register: str | None = None) -> str:
        """A random voice id; ``register="high"`` or ``"low"`` restricts the variant to that default range."""
        if register == "high":
            variants = self.high
        elif register == "low":
            variants = self.low
        else:
            variants = self.high + self.low
        accent = self.accents[rng.integers(len(self.accents))]
        return f"{accent}+{variants[rng.integers(len(variants))]}"

    def all_voices(self) -> set[str]:
        """Every voice id this pool can produce."""
        return {f"{a}+{v}" for a in self.accents for v in self.high + self.low}
