"""Write the steering tasks' prompt files (sentiment.json, ioi.json) in this folder; deterministic (seeded).

    python data/steering/make_steering_data.py

Each file: {"task", "kind", "build": [{prompt, preferred, dispreferred}], "eval": [{prompt, preferred,
dispreferred}], "generator"}.  Build and eval prompts come from disjoint templates (and, for sentiment, disjoint
subjects), so the vectors never see an evaluation prompt.

* sentiment: preferred = a positive word, dispreferred = a negative word after a neutral review-like opener;
  evaluated by the sentiment of greedy continuations of neutral openers (VADER compound score).
Also ``<task>_corpus.txt``: text containing the behaviour (from the build templates only) on which the
dictionaries for feature steering are trained (the default corpus has little of either behaviour).

* ioi: "When Mary and John went to the store, John gave a drink to" with preferred = the repeated name (S, " John")
  and dispreferred = the indirect object (IO, " Mary"): steering against the model's IOI behaviour, scored by
  log p(S) - log p(IO) (names from interp.tasks.ioi; single tokens for SmolLM2's tokenizer).
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

POS = [" great", " wonderful", " excellent", " lovely", " amazing", " fantastic", " delightful", " perfect"]
NEG = [" terrible", " awful", " horrible", " dreadful", " disappointing", " boring", " bad", " miserable"]
BUILD_OPENERS = ["The movie was", "I thought the food was", "Honestly, the hotel was", "The concert last night was",
                 "My experience with the company was", "The book I read was", "Our trip to the coast was",
                 "The new phone is", "The service at the restaurant was", "The weather on our holiday was",
                 "The class this semester was", "The game on Sunday was", "Working with the team was",
                 "The museum exhibition was", "The coffee at that shop is", "The show on television was"]
EVAL_OPENERS = ["I went to the market this morning and", "Yesterday my neighbour told me that",
                "The meeting at work today", "When I opened the letter, I", "The train to the city",
                "My sister called me and said", "This afternoon in the park", "The package arrived and it",
                "After dinner we decided to", "The new teacher at school", "Last weekend I visited my grandmother and",
                "The report on my desk", "On the way home I", "The old house at the end of the street",
                "When the results came in, we", "The first day at the new job"]

IOI_BUILD_TEMPLATES = [
    "When {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {S} gave a {OBJECT} to",
    "After {A} and {B} went to the {PLACE}, {S} gave a {OBJECT} to",
]
IOI_EVAL_TEMPLATES = [
    "While {A} and {B} were working at the {PLACE}, {S} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {S} decided to give it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {S} gave it to",
]
NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "James", "David", "Sarah", "Emma", "Michael", "Anna", "Paul", "Mark",
         "Kate", "Laura", "Peter", "Lisa", "Daniel", "Jack", "Rachel"]
PLACES = ["store", "park", "school", "office", "hospital", "restaurant", "garden", "station"]
OBJECTS = ["drink", "book", "ring", "gift", "letter", "ball", "bag", "key"]


def sentiment(seed: int = 0) -> dict:
    rng = random.Random(seed)
    build = [{"prompt": o, "preferred": rng.choice(POS), "dispreferred": rng.choice(NEG)} for o in BUILD_OPENERS]
    ev = [{"prompt": o, "preferred": "", "dispreferred": ""} for o in EVAL_OPENERS]
    return {"task": "sentiment", "kind": "generation", "scorer": "vader", "build": build, "eval": ev}


def ioi(seed: int = 0, n_build: int = 16, n_eval: int = 24) -> dict:
    rng = random.Random(seed)

    def make(templates, n):
        rows = []
        for i in range(n):
            a, b = rng.sample(NAMES, 2)
            io, s = (a, b) if i % 2 == 0 else (b, a)  # alternate which of the pair is repeated
            t = templates[i % len(templates)]
            p = t.format(A=a, B=b, S=s, PLACE=rng.choice(PLACES), OBJECT=rng.choice(OBJECTS))
            rows.append({"prompt": p, "preferred": " " + s, "dispreferred": " " + io})
        return rows

    return {"task": "ioi", "kind": "logit", "scorer": "logprob_diff", "build": make(IOI_BUILD_TEMPLATES, n_build),
            "eval": make(IOI_EVAL_TEMPLATES, n_eval)}


SUBJECTS = ["The movie", "The food", "The hotel", "The concert", "The service", "The book", "Our trip", "The phone",
            "The class", "The game", "The team", "The exhibition", "The coffee", "The show", "The staff", "The room"]
POS_TAILS = ["was great and I loved every minute of it.", "was wonderful, truly a delight.",
             "was excellent and I would happily go again.", "was lovely; everyone was so kind.",
             "was amazing, the best in years.", "was fantastic and made my day.", "was perfect from start to end.",
             "was delightful and left me smiling."]
NEG_TAILS = ["was terrible and I hated every minute of it.", "was awful, a complete waste of time.",
             "was horrible and I will never go back.", "was dreadful; everyone was so rude.",
             "was disappointing, the worst in years.", "was boring and ruined my day.",
             "was bad from start to end.", "was miserable and left me angry."]


def corpus(task: dict, seed: int = 0, n: int = 1200) -> str:
    """Text that contains the behaviour, for training dictionaries (from the build templates only)."""
    rng = random.Random(seed)
    lines = []
    if task["task"] == "sentiment":
        for _ in range(n):
            tails = POS_TAILS if rng.random() < 0.5 else NEG_TAILS
            lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(tails)}")
    else:
        for r in ioi(seed=seed + 1, n_build=n, n_eval=0)["build"]:  # build templates, other name draws
            lines.append(r["prompt"] + r["dispreferred"] + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for d in (sentiment(), ioi()):
        d["generator"] = "data/steering/make_steering_data.py (seed 0)"
        (HERE / f"{d['task']}.json").write_text(json.dumps(d, indent=1) + "\n")
        print(f"wrote {HERE / (d['task'] + '.json')}: {len(d['build'])} build, {len(d['eval'])} eval")
        (HERE / f"{d['task']}_corpus.txt").write_text(corpus(d))
        print(f"wrote {HERE / (d['task'] + '_corpus.txt')}")
