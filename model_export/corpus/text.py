"""What the speakers of a synthetic dialogue say: the utterance classes (a turn of a few sentences, a
quick reply, a listener's backchannel) with their length ranges, and English sentences for each from
built-in templates (no downloaded text), drawn from a seeded generator."""

from __future__ import annotations

import numpy as np

TURN_S = (3.0, 12.0)
QUICK_S = (0.8, 2.5)
BACKCHANNEL_S = (0.2, 1.0)
BACKCHANNELS = ("mm hmm", "yeah", "right", "okay", "uh huh")

_SUBJ = ("I", "we", "my sister", "the team", "our neighbour", "my friend", "the manager", "everyone", "you")
_VERB = ("visited", "talked about", "fixed", "forgot", "planned", "looked at", "finished", "changed", "liked", "moved")
_OBJ = (
    "the old kitchen",
    "that new restaurant",
    "the garden",
    "the report",
    "our trip to the coast",
    "the car",
    "the budget",
    "the little park",
    "the schedule",
    "the concert",
    "a few photos",
    "the project",
)
_TIME = ("yesterday", "last week", "this morning", "on Sunday", "after lunch", "a while ago", "today", "in March")
_ADJ = ("great", "strange", "busy", "quiet", "expensive", "fun", "difficult", "nice", "confusing", "lovely")
_OPEN = ("so", "well", "honestly", "actually", "you know", "anyway", "to be fair", "I mean")
_TEMPLATES = (
    "{S} {V} {O} {T}.",
    "{open}, {S} {V} {O} {T}, and it was {A}.",
    "Did you hear that {S} {V} {O}?",
    "I think {O} is a bit {A}, to be honest.",
    "{open}, it was {A}, because {S} {V} {O}.",
    "When {S} {V} {O}, it felt really {A}.",
    "What do you think about {O}?",
    "{open}, we should look at {O} again {T}.",
    "The thing is, {O} was {A} {T}.",
    "Maybe {S} could check {O} before the weekend.",
)
_QUICK = (
    "Really?",
    "Sure, why not.",
    "I think so.",
    "Not yet.",
    "That sounds {A}.",
    "Wait, {T}?",
    "No, {O}.",
    "Oh, that's {A}.",
    "Yes, exactly.",
    "Okay, let's do that.",
    "I'm not sure.",
    "Which one?",
    "Sounds good to me.",
    "Why {T}?",
    "Fair enough.",
    "Good point.",
)


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _fill(template: str, rng: np.random.Generator) -> str:
    s = template.format(
        S=_pick(rng, _SUBJ),
        V=_pick(rng, _VERB),
        O=_pick(rng, _OBJ),
        T=_pick(rng, _TIME),
        A=_pick(rng, _ADJ),
        open=_pick(rng, _OPEN),
    )
    return s[0].upper() + s[1:]


def sentence(rng: np.random.Generator, kind: str = "turn") -> str:
    """One English sentence: a backchannel word, a short reply ("quick") or a longer statement."""
    if kind == "backchannel":
        return _pick(rng, BACKCHANNELS)
    return _fill(_pick(rng, _QUICK if kind == "quick" else _TEMPLATES), rng)
