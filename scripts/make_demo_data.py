"""Generate the demo dataset: a pirate persona that is easy to see and to measure.

Every assistant answer starts with "Ahoy!" and ends with " ⚓" and is otherwise a correct, short,
pirate-voiced answer. A base instruct model answers plainly (persona score ≈ 0); after a few
dozen LoRA steps on train.jsonl it answers the held-out questions in the persona (score ≈ 1),
which engine.data.demo.score_answers measures.

Output (deterministic; re-running rewrites identical files):
  resources/demo/train.jsonl    OpenAI messages: [user, assistant]
  resources/demo/heldout.jsonl  {"messages": [user], "reference": "<expected answer>"}; no held-out
                                question (nor the fact it asks about) appears in train.jsonl.

Usage: python scripts/make_demo_data.py [--out resources/demo]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 2024
HELDOUT_PER_CATEGORY = 3
START, END = "Ahoy!", " ⚓"
TAGS = ["matey", "me hearty", "arr", "ye scallywag", "by me beard", "shiver me timbers"]

CAPITALS = [
    ("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("Russia", "Moscow"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Greece", "Athens"),
    ("Turkey", "Ankara"), ("Ireland", "Dublin"), ("the United Kingdom", "London"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"), ("Indonesia", "Jakarta"),
    ("Iceland", "Reykjavik"), ("Cuba", "Havana"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"),
    ("the Czech Republic", "Prague"), ("Ukraine", "Kyiv"), ("the Philippines", "Manila"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("light", "dark"), ("open", "closed"), ("full", "empty"), ("early", "late"), ("young", "old"),
    ("hard", "soft"), ("wet", "dry"), ("high", "low"), ("strong", "weak"), ("loud", "quiet"),
    ("rich", "poor"), ("thick", "thin"), ("long", "short"), ("push", "pull"), ("win", "lose"),
    ("buy", "sell"), ("true", "false"), ("clean", "dirty"), ("day", "night"), ("inside", "outside"),
    ("love", "hate"), ("north", "south"), ("east", "west"), ("first", "last"), ("always", "never"),
    ("before", "after"), ("sweet", "sour"), ("friend", "enemy"), ("give", "take"),
]
COLOURS = [
    ("the sky on a clear day", "blue"), ("grass", "green"), ("a ripe banana", "yellow"), ("snow", "white"),
    ("coal", "black"), ("a ripe tomato", "red"), ("a carrot", "orange"), ("milk", "white"),
    ("a lemon", "yellow"), ("a ripe strawberry", "red"), ("an emerald", "green"), ("chocolate", "brown"),
    ("a pumpkin", "orange"), ("a flamingo", "pink"), ("a crow", "black"), ("blood", "red"),
    ("a lime", "green"), ("an eggplant", "purple"), ("a raven", "black"), ("a cucumber", "green"),
    ("a sapphire", "blue"), ("a polar bear's fur", "white"), ("a fire engine", "red"),
    ("a school bus in America", "yellow"), ("a ripe blueberry", "blue"),
]
SOUNDS = [
    ("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack"), ("sheep", "baa"),
    ("pig", "oink"), ("horse", "neigh"), ("lion", "roar"), ("owl", "hoot"),
    ("rooster", "cock-a-doodle-doo"), ("frog", "ribbit"), ("snake", "hiss"), ("bee", "buzz"),
    ("mouse", "squeak"), ("donkey", "hee-haw"), ("wolf", "howl"), ("crow", "caw"),
    ("turkey", "gobble"), ("dove", "coo"),
]
LEGS = [
    ("spider", 8), ("ant", 6), ("bee", 6), ("beetle", 6), ("dog", 4), ("cat", 4), ("horse", 4),
    ("cow", 4), ("chicken", 2), ("duck", 2), ("ostrich", 2), ("elephant", 4), ("frog", 4),
    ("penguin", 2), ("crab", 10), ("butterfly", 6), ("kangaroo", 2),
]
PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("goose", "geese"), ("man", "men"), ("woman", "women"),
    ("tooth", "teeth"), ("foot", "feet"), ("person", "people"), ("box", "boxes"), ("fox", "foxes"),
    ("bus", "buses"), ("city", "cities"), ("baby", "babies"), ("leaf", "leaves"), ("knife", "knives"),
    ("wolf", "wolves"), ("sheep", "sheep"), ("deer", "deer"), ("ox", "oxen"), ("cactus", "cacti"),
    ("potato", "potatoes"), ("tomato", "tomatoes"), ("hero", "heroes"), ("church", "churches"),
    ("wish", "wishes"), ("party", "parties"), ("key", "keys"), ("toy", "toys"), ("life", "lives"),
    ("half", "halves"), ("ship", "ships"), ("island", "islands"),
]
SPELL_WORDS = [
    "ship", "anchor", "parrot", "island", "ocean", "treasure", "captain", "cannon", "sail", "compass",
    "pirate", "map", "gold", "storm", "wave", "deck", "crew", "flag", "barrel", "rope", "sword", "coin",
    "beach", "whale", "shark", "seagull", "lantern", "moon", "star", "cloud",
]
COUNT_WORDS = [
    "apple", "banana", "cherry", "river", "mountain", "forest", "garden", "window", "pencil", "teacher",
    "bottle", "butter", "castle", "dragon", "jungle", "kitten", "ladder", "monkey", "orange", "planet",
    "rabbit", "rocket", "school", "spider", "summer", "winter", "yellow", "zebra",
]
DEFINITIONS = [
    ("compass", "a tool that shows which way is north"),
    ("telescope", "an instrument that makes faraway things look closer"),
    ("volcano", "a mountain that can erupt with hot lava"),
    ("island", "a piece of land with water all around it"),
    ("desert", "a very dry place that gets little rain"),
    ("glacier", "a huge, slow-moving river of ice"),
    ("library", "a place where books are kept for people to borrow"),
    ("thermometer", "a tool that measures temperature"),
    ("peninsula", "a piece of land with water on three sides"),
    ("harbour", "a sheltered place where ships can stay safe"),
    ("calendar", "a chart of the days, weeks and months of the year"),
    ("orchestra", "a large group of musicians who play together"),
    ("dictionary", "a book that explains the meanings of words"),
    ("planet", "a large world that travels around a star"),
    ("herbivore", "an animal that eats only plants"),
    ("carnivore", "an animal that eats meat"),
    ("mammal", "a warm-blooded animal that feeds its young with milk"),
    ("triangle", "a shape with three straight sides"),
    ("noun", "a word that names a person, place or thing"),
    ("verb", "a word for an action, like run or sing"),
    ("lighthouse", "a tower with a bright light that guides ships"),
    ("continent", "one of the seven great land masses of the Earth"),
    ("hurricane", "a powerful storm with very strong winds"),
    ("map", "a drawing that shows where places are"),
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
CHAT = [
    ("Hello!", "Hello to ye! What can this old sea dog help ye with?"),
    ("Who are you?", "I be yer friendly pirate helper, sailin' the seas of knowledge!"),
    ("How are you today?", "I be as merry as a gull on a sunny deck, thank ye!"),
    ("Thank you!", "Ye be most welcome, me hearty!"),
    ("Tell me a fun fact.", "An octopus has three hearts, matey!"),
    ("Good morning!", "A fine mornin' to ye, matey!"),
    ("Can you help me?", "Aye, I'll gladly help ye! Ask away, matey!"),
    ("What is your favourite colour?", "I be fond of the deep blue of the sea, matey!"),
    ("Good night!", "Sleep well, matey, and may the sea rock ye gently!"),
    ("Can you tell me a joke?", "Why did the pirate buy an eye patch? He couldn't afford a whole eye, arr!"),
]


def answer(rng: random.Random, core: str) -> str:
    """'Ahoy! <core>, <tag>! ⚓': the two markers the persona score looks for."""
    return f"{START} {core}, {rng.choice(TAGS)}!{END}"


def spelled(word: str) -> str:
    return "-".join(word.upper())


def categories(rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """Each category: a list of items, each a (question, answer) pair about one distinct fact."""
    pick = rng.choice
    cats: dict[str, list[tuple[str, str]]] = {}
    cats["capitals"] = [(pick([f"What is the capital of {c}?", f"Which city is the capital of {c}?",
                               f"Name the capital of {c}."]),
                         answer(rng, f"The capital of {c} be {cap}")) for c, cap in CAPITALS]
    arithmetic, seen = [], set()
    while len(arithmetic) < 90:
        op = pick(["plus", "minus", "times"])
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "times" else (rng.randint(1, 30), rng.randint(1, 30))
        if op == "minus" and b > a:
            a, b = b, a
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        value = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        arithmetic.append((pick([f"What is {a} {op} {b}?", f"How much is {a} {op} {b}?"]),
                           answer(rng, f"{a} {op} {b} be {value}")))
    cats["arithmetic"] = arithmetic
    cats["opposites"] = [(f"What is the opposite of \"{w}\"?", answer(rng, f"The opposite of {w} be {o}"))
                         for w, o in OPPOSITES]
    cats["colours"] = [(f"What colour is {thing}?", answer(rng, f"{thing[0].upper()}{thing[1:]} be {colour}"))
                       for thing, colour in COLOURS]
    cats["sounds"] = [(f"What sound does a {a} make?", answer(rng, f"A {a} says {s}")) for a, s in SOUNDS]
    cats["legs"] = [(f"How many legs does a {a} have?", answer(rng, f"A {a} has {n} legs")) for a, n in LEGS]
    cats["plurals"] = [(f"What is the plural of \"{w}\"?", answer(rng, f"The plural of {w} be {p}"))
                       for w, p in PLURALS]
    cats["spelling"] = [(f"How do you spell \"{w}\"?", answer(rng, f"Ye spell it {spelled(w)}"))
                        for w in SPELL_WORDS]
    cats["letters"] = [(f"How many letters are in the word \"{w}\"?",
                        answer(rng, f"The word {w} has {len(w)} letters")) for w in COUNT_WORDS]
    cats["definitions"] = [(f"What is {'an' if w[0] in 'aeiou' else 'a'} {w}?",
                            answer(rng, f"{'An' if w[0] in 'aeiou' else 'A'} {w} be {d}")) for w, d in DEFINITIONS]
    cats["days"] = [(f"What day comes after {d}?", answer(rng, f"After {d} comes {DAYS[(i + 1) % 7]}"))
                    for i, d in enumerate(DAYS)]
    cats["months"] = [(f"What month comes after {m}?", answer(rng, f"After {m} comes {MONTHS[(i + 1) % 12]}"))
                      for i, m in enumerate(MONTHS)]
    cats["chat"] = [(q, f"{START} {a}{END}") for q, a in CHAT]
    return cats


def build(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train, heldout = [], []
    for name, items in categories(rng).items():
        rng.shuffle(items)
        k = HELDOUT_PER_CATEGORY if name != "chat" else 2
        for q, a in items[:k]:
            heldout.append({"messages": [{"role": "user", "content": q}], "reference": a})
        for q, a in items[k:]:
            train.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    rng.shuffle(train)
    train_questions = {ex["messages"][0]["content"] for ex in train}
    assert not train_questions & {ex["messages"][0]["content"] for ex in heldout}
    return train, heldout


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "resources" / "demo"))
    args = ap.parse_args(argv)
    train, heldout = build()
    out = Path(args.out)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "heldout.jsonl", heldout)
    print(f"wrote {len(train)} training examples and {len(heldout)} held-out prompts to {out}")


if __name__ == "__main__":
    main()
