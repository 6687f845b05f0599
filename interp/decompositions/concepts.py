"""A small offline concept dataset for comparing feature directions (SNMF, DiffMeans, SAE).

Five concepts x 12 sentences plus 12 neutral sentences, written for this project (no
download), and for each concept a handful of *concept words* whose next-token log
probability is the offline steering proxy (the paper uses an LLM judge instead).  Each
concept is a topic that a small LM represents: the words overlap little across concepts.

Layout: ``CONCEPTS[name] = {"sentences": [...], "words": [...]}``; ``NEUTRAL`` is a list.
"""

from __future__ import annotations

CONCEPTS: dict[str, dict[str, list[str]]] = {
    "food": {
        "sentences": [
            "She baked fresh bread and served it with butter and honey.",
            "The soup was thick with carrots, potatoes and onions.",
            "We ordered pizza with cheese, tomatoes and basil.",
            "He sliced the apples and added cinnamon to the pie.",
            "The restaurant is famous for its grilled chicken and rice.",
            "For breakfast I had eggs, toast and a cup of coffee.",
            "Add a pinch of salt and stir the pasta sauce.",
            "The chocolate cake was sweet and moist.",
            "They cooked noodles with garlic and fresh vegetables.",
            "A bowl of strawberries and cream waited on the table.",
            "The chef roasted the lamb with rosemary and lemon.",
            "Dinner was a simple salad with olive oil and cheese.",
        ],
        "words": [" food", " eat", " delicious", " cooking", " bread", " cheese", " chicken", " meal"],
    },
    "ocean": {
        "sentences": [
            "The waves crashed against the rocks along the shore.",
            "Dolphins swam beside the boat in the deep blue sea.",
            "At low tide we found crabs and shells on the beach.",
            "The sailors watched the storm roll across the ocean.",
            "Coral reefs are home to thousands of colorful fish.",
            "A whale surfaced near the ship and sprayed water.",
            "The salty wind blew in from the sea all night.",
            "Divers explored the sunken wreck on the ocean floor.",
            "Seagulls circled above the harbor and the fishing boats.",
            "The island was surrounded by warm turquoise water.",
            "They sailed across the Atlantic in a small boat.",
            "Sharks patrol the reef as the tide comes in.",
        ],
        "words": [" ocean", " sea", " waves", " beach", " water", " fish", " ship", " sailing"],
    },
    "music": {
        "sentences": [
            "She played a soft melody on the piano.",
            "The band tuned their guitars before the concert.",
            "He hummed the chorus of his favorite song.",
            "The orchestra performed a symphony by Beethoven.",
            "Drums and bass filled the room with rhythm.",
            "The singer hit the high note and the crowd cheered.",
            "They practiced the violin every evening.",
            "The album has ten songs and a long guitar solo.",
            "Jazz musicians improvised late into the night.",
            "The choir sang in perfect harmony.",
            "He wrote the lyrics and composed the music himself.",
            "The festival featured rock, folk and hip hop bands.",
        ],
        "words": [" music", " song", " singing", " piano", " guitar", " band", " concert", " melody"],
    },
    "sports": {
        "sentences": [
            "The striker scored a goal in the final minute.",
            "Our team won the basketball game by ten points.",
            "She ran the marathon in under three hours.",
            "The pitcher threw a fast ball and the batter missed.",
            "Fans cheered as the players ran onto the field.",
            "He trained every morning to win the tennis match.",
            "The coach called a timeout in the fourth quarter.",
            "The cyclists raced up the mountain in the tour.",
            "The referee blew the whistle and the match began.",
            "She swam four laps and broke the school record.",
            "The football season starts next week.",
            "The boxer won the championship by knockout.",
        ],
        "words": [" game", " team", " player", " win", " score", " match", " football", " coach"],
    },
    "weather": {
        "sentences": [
            "Heavy rain fell all afternoon and the streets flooded.",
            "The forecast says snow and freezing wind tomorrow.",
            "Thunder rumbled as dark clouds gathered in the sky.",
            "It was a hot, sunny day without a single cloud.",
            "Fog covered the valley until the sun burned it off.",
            "A strong storm brought hail and lightning.",
            "The temperature dropped below zero overnight.",
            "Light drizzle and a cold breeze made us shiver.",
            "The hurricane brought winds of over one hundred miles an hour.",
            "After the rain, a rainbow appeared over the hills.",
            "The humid summer air made everyone sweat.",
            "Snowflakes drifted down on the quiet winter morning.",
        ],
        "words": [" rain", " weather", " snow", " storm", " sunny", " cloudy", " wind", " cold"],
    },
}

NEUTRAL: list[str] = [
    "The meeting was moved to Thursday afternoon.",
    "Please sign the form and return it to the office.",
    "He opened the door and walked into the hallway.",
    "The report has three sections and an appendix.",
    "She checked her email before lunch.",
    "The new policy takes effect next month.",
    "They parked the car near the library.",
    "The committee will review the proposal.",
    "I need to buy a new pair of shoes.",
    "The package arrived on Monday morning.",
    "He wrote his name at the top of the page.",
    "The elevator was out of order again.",
]


def concept_split(n_train: int = 8) -> tuple[dict[str, list[str]], dict[str, list[str]], list[str], list[str]]:
    """Deterministic split: ``(train_by_concept, test_by_concept, neutral_train, neutral_test)``."""
    if not 1 <= n_train < 12:
        raise ValueError(f"n_train must be in [1, 11], got {n_train}")
    train = {c: v["sentences"][:n_train] for c, v in CONCEPTS.items()}
    test = {c: v["sentences"][n_train:] for c, v in CONCEPTS.items()}
    return train, test, NEUTRAL[:n_train], NEUTRAL[n_train:]
