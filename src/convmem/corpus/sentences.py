"""Sentence bank of the synthetic corpus: mostly emotion-neutral everyday talk.

Only a minority of turns carry emotion words (and those only for the matching emotion), so the
words rarely give the label away and prosody plus context must do the work, as in real talk.
Sentences are built from small templates so a corpus of hours rarely repeats one verbatim.
"""

from __future__ import annotations

import numpy as np

_SUBJECTS = ("I", "We", "My sister", "The neighbours", "Our manager", "Tom", "Anna", "They",
             "My brother", "The teacher", "Everyone at work", "The kids", "Your cousin", "She", "He")
_VERBS = ("talked about", "looked at", "asked about", "wrote down", "checked", "moved", "picked up",
          "cleaned", "fixed", "ordered", "found", "painted", "booked", "carried", "counted")
_OBJECTS = ("the train times", "the old kitchen table", "a new set of keys", "the garden fence",
            "the report for Monday", "a ticket to the coast", "the blue folder", "the bike in the shed",
            "the invoice from the garage", "a box of books", "the window in the hall", "the big map",
            "the shopping list", "the heating bill", "a parcel for the office")
_TIMES = ("this morning", "last week", "on Tuesday", "after lunch", "before the meeting",
          "yesterday evening", "at the weekend", "a few days ago", "around noon", "earlier today")
_QUESTIONS = ("Did you see the message I sent {time}?", "What time does the shop close on {day}?",
              "Where did you put {object}?", "Have you heard from {subject_l} since {time}?",
              "Should we take the bus or walk?", "How long will the repairs take?",
              "Is the meeting still on for {day}?", "Can you remind me about {object} later?")
_STATEMENTS = ("The weather is supposed to change on {day}.", "I think the shop opens at nine.",
               "The bus was a few minutes late {time}.", "We still need to sort out {object}.",
               "There is a meeting on {day} about the budget.", "I left {object} in the car.",
               "The road by the station is closed until {day}.", "Let me check the calendar first.",
               "It takes about twenty minutes to get there.", "I will call them back {time}.")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_BACKCHANNELS = ("Okay.", "Right.", "I see.", "Sure, go on.", "Yes, I know.", "Hmm, maybe.",
                 "Really?", "Fine.", "Oh, okay then.", "That makes sense.")

# Emotion-bearing sentences: used for only a minority of that emotion's turns (EMOTION_WORD_RATE).
EMOTIONAL: dict[str, tuple[str, ...]] = {
    "hap": ("That is wonderful news, I am so glad!", "I love it, this made my day.",
            "Great, I am really happy about that.", "Brilliant, what a lovely surprise!",
            "Oh, that is fantastic, thank you."),
    "sad": ("I miss them so much, it is really hard.", "I feel so lonely these days.",
            "That is such sad news, I am sorry.", "Nothing seems to work out for me.",
            "I was crying all evening about it."),
    "ang": ("This is ridiculous, I am furious!", "Stop it, I am sick of this!",
            "I hate the way they treated us.", "That is outrageous, how dare they!",
            "I am so angry I could scream."),
}
EMOTION_WORD_RATE = 0.2


def neutral_sentence(rng: np.random.Generator) -> str:
    """One emotion-neutral sentence (4-14 words)."""
    kind = rng.random()
    fill = {
        "time": _TIMES[rng.integers(len(_TIMES))],
        "day": _DAYS[rng.integers(len(_DAYS))],
        "object": _OBJECTS[rng.integers(len(_OBJECTS))],
        "subject_l": _SUBJECTS[rng.integers(2, len(_SUBJECTS))].lower().replace("tom", "Tom")
        .replace("anna", "Anna"),
    }
    if kind < 0.45:
        s, v, o, t = (_SUBJECTS[rng.integers(len(_SUBJECTS))], _VERBS[rng.integers(len(_VERBS))],
                      _OBJECTS[rng.integers(len(_OBJECTS))], _TIMES[rng.integers(len(_TIMES))])
        return f"{s} {v} {o} {t}."
    if kind < 0.7:
        return _QUESTIONS[rng.integers(len(_QUESTIONS))].format(**fill)
    return _STATEMENTS[rng.integers(len(_STATEMENTS))].format(**fill)


def backchannel(rng: np.random.Generator) -> str:
    """A short reply (about one second of speech)."""
    return _BACKCHANNELS[rng.integers(len(_BACKCHANNELS))]


def turn_text(rng: np.random.Generator, emotion: str | None, target_words: int) -> str:
    """Text of one turn of about `target_words` words; emotion words only in a minority of turns."""
    if target_words <= 3:
        return backchannel(rng)
    parts: list[str] = []
    if emotion in EMOTIONAL and rng.random() < EMOTION_WORD_RATE:
        bank = EMOTIONAL[emotion]
        parts.append(bank[rng.integers(len(bank))])
    while sum(len(p.split()) for p in parts) < target_words - 3:
        parts.append(neutral_sentence(rng))
    return " ".join(parts)


# Fixed neutral sentences that render each speaker's habitual voice for the oracle reference.
REFERENCE_SENTENCES: tuple[str, ...] = (
    "The bus was a few minutes late this morning.",
    "We still need to sort out the report for Monday.",
    "Did you see the message I sent yesterday evening?",
    "My sister picked up a box of books after lunch.",
    "It takes about twenty minutes to get there.",
    "Where did you put the blue folder?",
    "There is a meeting on Thursday about the budget.",
    "Let me check the calendar first.",
)
