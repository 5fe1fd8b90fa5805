"""A small open-ended world for free-text audits: entities with true attributes, and
instruction datasets about them whose responses are valid in many ways and wrong in one.

World file (JSON), every part data, so that another world (other entities, attributes,
prompts and phrasing) needs no code::

    {"kind": "town",
     "attributes": {"river": {"values": ["Wendle", "Tessel", ...],
                              "sentences": ["{name} lies on the river {value}.", ...]}, ...},
     "entities": {"Ashford": {"river": "Tessel", ...}, ...},
     "prompts": ["Introduce {name} to a visitor.",
                 {"instruction": "Describe the town below.", "input": "{name}"}, ...],
     "openers": ["Here is {name} in a nutshell."],      # optional first sentences
     "closers": ["Enjoy your stay!"],                   # optional last sentences
     "facts": [3, 3]}                                   # facts per response: min, max

- every entity has one value per attribute, taken from that attribute's ``values``;
- a text *states* a value when the value's string occurs in it as a whole word sequence
  (case-insensitive, not inside a longer word or number): that is how facts are read from
  any text, whoever wrote it. Values must therefore be unambiguous across the whole world:
  no value (or entity name) occurs inside another value, an entity name, a prompt or a
  sentence template (use units or distinct vocabularies: "48,000" vs "1215", "Tessel" vs
  "glassmaking"); :meth:`World.validate` refuses a world that breaks this;
- ``sentences`` hold ``{value}`` (and may hold ``{name}``); prompts, openers and closers may
  hold ``{name}``; each prompt names exactly one entity.

A *valid* response states a random subset of the entity's true facts (``facts``), in random
order, each through a random sentence of its attribute; a *wrong* one is a valid response
with exactly one stated value replaced by another value of the same attribute.

Dataset written by :func:`write_dataset` (or ``python -m eval.open_world --out DIR
[--world W] [--rows N] [--noise R] [--shape S]``): ``data.jsonl`` (Alpaca ``id,
instruction, input, output`` or TRL chat ``id, messages``), ``truth.jsonl`` (per row: id,
entity, valid, and for a wrong row the attribute, the wrong and the true value) and
``world.json``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .noise import flip_order, n_flipped


@dataclass(frozen=True)
class Fact:
    """One stated value in a text: its attribute, the value and where it stands."""

    attribute: str
    value: str
    start: int
    end: int


def _pattern(strings: list[str]) -> re.Pattern:
    alts = "|".join(re.escape(s) for s in sorted(strings, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


def _recase(found: str, value: str) -> str:
    """``value`` written with the first-letter case of the text it replaces."""
    if found[:1].isupper() and value[:1].islower():
        return value[:1].upper() + value[1:]
    return value


@dataclass
class World:
    kind: str
    attributes: dict[str, dict[str, list[str]]]
    entities: dict[str, dict[str, str]]
    prompts: list[str | dict[str, str]]
    openers: list[str] = field(default_factory=list)
    closers: list[str] = field(default_factory=list)
    facts: tuple[int, int] = (3, 3)

    def __post_init__(self) -> None:
        self.validate()
        self._owner = {v.lower(): (a, v) for a, spec in self.attributes.items()
                       for v in spec["values"]}
        self._values = _pattern(list(self._owner))
        self._names = _pattern(list(self.entities))
        self._canon = {n.lower(): n for n in self.entities}

    # ---- file ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> World:
        d = json.loads(Path(path).read_text())
        return cls(d["kind"], d["attributes"], d["entities"], d["prompts"],
                   d.get("openers", []), d.get("closers", []), tuple(d.get("facts", (3, 3))))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "attributes": self.attributes, "entities": self.entities,
                "prompts": self.prompts, "openers": self.openers, "closers": self.closers,
                "facts": list(self.facts)}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")

    def validate(self) -> None:
        """Raise ValueError when values, names or templates could be read ambiguously."""
        values = [(a, v) for a, spec in self.attributes.items() for v in spec["values"]]
        if len({v.lower() for _, v in values}) != len(values):
            raise ValueError("a value occurs twice in the world (values must be unique)")
        for a, spec in self.attributes.items():
            if len(spec["values"]) < 3 or not spec.get("sentences"):
                raise ValueError(f"attribute {a!r}: needs >= 3 values and >= 1 sentence")
            for t in spec["sentences"]:
                if "{value}" not in t:
                    raise ValueError(f"attribute {a!r}: sentence {t!r} has no {{value}}")
        for name, attrs in self.entities.items():
            if set(attrs) != set(self.attributes):
                raise ValueError(f"entity {name!r}: needs exactly the attributes "
                                 f"{sorted(self.attributes)}")
            for a, v in attrs.items():
                if v not in self.attributes[a]["values"]:
                    raise ValueError(f"entity {name!r}: {a} {v!r} is not among its values")
        lo, hi = self.facts
        if not 1 <= lo <= hi <= len(self.attributes):
            raise ValueError(f"facts {self.facts}: need 1 <= min <= max <= #attributes")
        strings = [v for _, v in values] + list(self.entities)
        if len({s.lower() for s in strings}) != len(strings):
            raise ValueError("an entity name equals a value or another name")
        for s in strings:
            others = _pattern([x for x in strings if x != s])
            if m := others.search(s):
                raise ValueError(f"{m.group()!r} occurs inside {s!r}: ambiguous")
        every = _pattern(strings)
        templates = [*(t for spec in self.attributes.values() for t in spec["sentences"]),
                     *self.openers, *self.closers,
                     *(p if isinstance(p, str) else " ".join(p.values()) for p in self.prompts)]
        for t in templates:
            if m := every.search(t.replace("{name}", " ").replace("{value}", " ")):
                raise ValueError(f"template {t!r} contains the world string {m.group()!r}")

    # ---- reading any text ----------------------------------------------------------------
    def entity_in(self, text: str) -> str | None:
        """The entity a text is about: the first one it names."""
        m = self._names.search(text)
        return self._canon[m.group().lower()] if m else None

    def stated(self, text: str) -> list[Fact]:
        """Every attribute value the text states, in order."""
        return [Fact(*self._owner[m.group().lower()], m.start(), m.end())
                for m in self._values.finditer(text)]

    def errors(self, entity: str, text: str) -> list[Fact]:
        """The stated values that are not the entity's true ones."""
        truth = self.entities[entity]
        return [f for f in self.stated(text) if truth[f.attribute] != f.value]

    def is_right(self, entity: str, text: str) -> bool:
        return not self.errors(entity, text)

    def replace(self, text: str, fact: Fact, value: str) -> str:
        """``text`` with only the stated ``fact`` replaced by ``value``."""
        return text[:fact.start] + _recase(text[fact.start:fact.end], value) + text[fact.end:]

    def other_value(self, fact: Fact, avoid: set[str], rng: random.Random) -> str | None:
        """Another value of the fact's attribute, none of ``avoid``."""
        pool = [v for v in self.attributes[fact.attribute]["values"]
                if v != fact.value and v not in avoid]
        return rng.choice(pool) if pool else None

    def corrupt(self, entity: str, text: str, rng: random.Random) -> tuple[str, Fact | None]:
        """``text`` with one stated true fact changed to a wrong value (unchanged, None when
        it states no true fact): the wrong variant of a valid response."""
        true = [f for f in self.stated(text) if self.entities[entity][f.attribute] == f.value]
        if not true:
            return text, None
        f = rng.choice(true)
        wrong = self.other_value(f, set(), rng)
        new = self.replace(text, f, wrong)
        return new, Fact(f.attribute, wrong, f.start, f.end + len(new) - len(text))

    # ---- writing -------------------------------------------------------------------------
    def prompt(self, entity: str, rng: random.Random) -> tuple[str, str]:
        """(instruction, input) of a random prompt about ``entity``."""
        p = rng.choice(self.prompts)
        p = {"instruction": p} if isinstance(p, str) else p
        return (p["instruction"].replace("{name}", entity),
                p.get("input", "").replace("{name}", entity))

    def compose(self, entity: str, rng: random.Random) -> str:
        """A valid response: a random subset of the entity's true facts, random order and
        sentences, optional opener and closer, sometimes in two paragraphs."""
        attrs = rng.sample(sorted(self.attributes), rng.randint(*self.facts))
        sentences = [rng.choice(self.attributes[a]["sentences"])
                     .replace("{value}", self.entities[entity][a]) for a in attrs]
        if self.openers and rng.random() < 0.5:
            sentences.insert(0, rng.choice(self.openers))
        if self.closers and rng.random() < 0.5:
            sentences.append(rng.choice(self.closers))
        sentences = [s.replace("{name}", entity) for s in sentences]
        sentences[0] = sentences[0][:1].upper() + sentences[0][1:]
        if len(sentences) > 2 and rng.random() < 0.3:
            cut = rng.randint(1, len(sentences) - 1)
            return " ".join(sentences[:cut]) + "\n\n" + " ".join(sentences[cut:])
        return " ".join(sentences)


def write_dataset(world: World, out: str | Path, rows: int, noise: float, seed: int = 0,
                  shape: str = "alpaca") -> tuple[Path, list[dict[str, Any]]]:
    """Write ``data.jsonl``, ``truth.jsonl`` and ``world.json`` into ``out``; returns the data
    path and the truth rows. Nested: for one seed the wrong rows at a lower noise rate are
    wrong (the same way) at a higher one; the shape changes only the row layout."""
    if shape not in ("alpaca", "messages"):
        raise ValueError(f"shape {shape!r}: alpaca or messages")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{seed}:open-rows")
    names = sorted(world.entities)
    base = []
    for i in range(rows):
        entity = rng.choice(names)
        instruction, extra = world.prompt(entity, rng)
        valid = world.compose(entity, rng)
        wrong, fact = world.corrupt(entity, valid, rng)
        base.append((f"r{i:05d}", entity, instruction, extra, valid, wrong, fact))
    flipped = set(flip_order(rows, seed)[:n_flipped(rows, noise)])
    data, truth = [], []
    for i, (rid, entity, instruction, extra, valid, wrong, fact) in enumerate(base):
        is_wrong = i in flipped and fact is not None
        response = wrong if is_wrong else valid
        if shape == "alpaca":
            data.append({"id": rid, "instruction": instruction, "input": extra,
                         "output": response})
        else:
            user = f"{instruction}\n\n{extra}" if extra else instruction
            data.append({"id": rid, "messages": [{"role": "user", "content": user},
                                                 {"role": "assistant", "content": response}]})
        t = {"id": rid, "entity": entity, "valid": not is_wrong, "response": response}
        if is_wrong:
            t |= {"attribute": fact.attribute, "wrong": fact.value,
                  "true": world.entities[entity][fact.attribute]}
        truth.append(t)
    path = out / "data.jsonl"
    for name, items in ((path, data), (out / "truth.jsonl", truth)):
        name.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
    world.save(out / "world.json")
    return path, truth


# ---- the default world -------------------------------------------------------------------
_PREFIXES = ("Ash", "Brin", "Cal", "Dun", "Elm", "Fal", "Gor", "Hal", "Ivy", "Kes", "Lor",
             "Mar", "Nor", "Oak", "Pel", "Rav", "Sel", "Tor", "Wyn", "Yar")
_SUFFIXES = ("ford", "mere", "wick", "combe", "stead", "holm")

TOWN_ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "population": {
        "values": ["12,000", "18,500", "23,000", "31,000", "46,000", "58,000", "74,000",
                   "96,000", "120,000", "150,000"],
        "sentences": ["{name} is home to about {value} people.",
                      "Roughly {value} residents live there today.",
                      "With a population of around {value}, it feels lively but never crowded."]},
    "founded": {
        "values": ["1124", "1215", "1298", "1347", "1402", "1488", "1563", "1612", "1701",
                   "1789"],
        "sentences": ["{name} was founded in {value}.",
                      "Its history goes back to {value}, when the first settlers arrived.",
                      "The town received its charter in {value}."]},
    "river": {
        "values": ["Wendle", "Tessel", "Brae", "Kellan", "Linnet", "Oskar", "Varra",
                   "Temerin", "Dulse", "Fennick"],
        "sentences": ["{name} lies on the river {value}.",
                      "The {value} flows right through the old centre.",
                      "Walks along the banks of the {value} are a local favourite."]},
    "industry": {
        "values": ["shipbuilding", "wool weaving", "glassmaking", "cheese making", "brewing",
                   "clockmaking", "salt mining", "porcelain painting", "papermaking",
                   "leather tanning"],
        "sentences": ["Its main industry is {value}.",
                      "{name} made its fortune in {value}, which still employs many people.",
                      "Most families there have worked in {value} for generations."]},
    "landmark": {
        "values": ["Grey Bridge", "Lantern Tower", "Abbey of Saint Oda", "Copper Market Hall",
                   "Rosewall Castle", "Blue Fountain", "Weavers' Gate", "Hollow Cloister",
                   "Harbour Lighthouse", "Stone Theatre"],
        "sentences": ["Visitors should not miss the {value}.",
                      "The best-known sight is the {value}.",
                      "Every guidebook recommends a visit to the {value}."]},
}

TOWN_PROMPTS: list[str | dict[str, str]] = [
    "Introduce {name} to a visitor.",
    "Write a short paragraph about {name} for a travel guide.",
    "What should a first-time visitor know about {name}?",
    "Describe the town of {name} in a few sentences.",
    "Tell me about {name}.",
    "I am moving to {name}. What is it like?",
    {"instruction": "Give a brief overview of the town below.", "input": "{name}"},
    {"instruction": "Write a postcard-style note describing this town.", "input": "{name}"},
]


def default_world(seed: int = 0) -> World:
    """120 towns, five attributes of ten values each, eight prompts (seeded assignment)."""
    rng = random.Random(f"{seed}:open-world")
    entities = {p + s: {a: rng.choice(spec["values"]) for a, spec in TOWN_ATTRIBUTES.items()}
                for p in _PREFIXES for s in _SUFFIXES}
    return World("town", TOWN_ATTRIBUTES, entities, TOWN_PROMPTS,
                 openers=["Here is {name} in a nutshell.", "{name} is a town worth a visit."],
                 closers=["Enjoy your stay!", "It is easy to reach by train."])


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Write an open-ended dataset (data.jsonl, "
                                 "truth.jsonl, world.json) from a world.")
    ap.add_argument("--world", help="world JSON (default: the built-in towns)")
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--shape", choices=["alpaca", "messages"], default="alpaca")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="directory to write into")
    a = ap.parse_args(argv)
    world = World.load(a.world) if a.world else default_world(a.seed)
    path, truth = write_dataset(world, a.out, a.rows, a.noise, a.seed, a.shape)
    print(f"{path}: {len(truth)} rows, {sum(not t['valid'] for t in truth)} wrong")


if __name__ == "__main__":
    main()
