"""The Deepgram Aura English voices a greeting can use."""

from __future__ import annotations

DEFAULT_VOICE = "aura-asteria-en"

_AURA_2_FEMININE = (
    "amalthea andromeda asteria athena aurora callista cora cordelia delia electra harmonia "
    "helena hera iris janus juno luna minerva ophelia pandora phoebe selene thalia theia vesta"
)
_AURA_2_MASCULINE = (
    "apollo arcas aries atlas draco hermes hyperion jupiter mars neptune odysseus orion orpheus "
    "pluto saturn zeus"
)
_AURA_1 = "angus arcas asteria athena helios hera luna orion orpheus perseus stella zeus"

# Accents differ from US American for these, as Deepgram's voice list says.
_ACCENTS = {
    "amalthea": "Filipino",
    "pandora": "British",
    "theia": "Australian",
    "draco": "British",
    "hyperion": "Australian",
    "janus": "Southern US",
}
_AURA_1_ACCENTS = {"athena": "British", "angus": "Irish", "helios": "British"}


def _label(name: str, family: str, accent: str | None) -> str:
    suffix = f", {accent}" if accent else ""
    return f"{name.capitalize()} ({family}{suffix})"


VOICE_CHOICES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Aura-2 English, feminine",
        [
            (f"aura-2-{n}-en", _label(n, "Aura-2", _ACCENTS.get(n)))
            for n in sorted(_AURA_2_FEMININE.split())
        ],
    ),
    (
        "Aura-2 English, masculine",
        [
            (f"aura-2-{n}-en", _label(n, "Aura-2", _ACCENTS.get(n)))
            for n in sorted(_AURA_2_MASCULINE.split())
        ],
    ),
    (
        "Aura-1 English",
        [
            (f"aura-{n}-en", _label(n, "Aura-1", _AURA_1_ACCENTS.get(n)))
            for n in sorted(_AURA_1.split())
        ],
    ),
]

VOICES: frozenset[str] = frozenset(value for _, group in VOICE_CHOICES for value, _ in group)
