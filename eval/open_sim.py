"""A simulated OpenAI-compatible endpoint for open-ended (free-text) audits.

It knows the world (``eval/open_world.py``) and answers what each request asks, reading
facts in any text by the world's values (never by our templates). The role is the requested
model name (``sim-<role>``, :func:`eval.sim_server.sim_models`); each request is *right* with
probability ``accuracy`` (per-role overrides), seeded by (seed, role, request content, n-th
identical request at temperature > 0). Confidence as in ``eval/sim_server.py``: right answers
c ~ U(0.6, 0.99); wrong ones with probability ``calibration`` c ~ U(1/n, 0.6), else
U(0.6, 0.99). The request kind is read from the user message's sections:

- ``Response to correct:`` (correct_context, correct_review; roles context, reviewer,
  corrector): right → each wrong value replaced by the true one, every other character kept
  (or ``Answer: UNCHANGED`` on a valid response); wrong → on a wrong response ``miss``
  share UNCHANGED, the rest another wrong value; on a valid one a true fact made wrong. The
  changed words (or UNCHANGED) carry c in the logprobs.
- ``Response under audit:`` (verify; matcher): ``A`` consistent / ``B`` contradicts (naming
  the wrong fact) / ``C`` unsure. Right → the truth; wrong → ``judge_unsure`` share C, else
  flipped. The verdict letter carries c (the others share 1 − c).
- ``Response 1:`` and ``Response 2:`` (the old sameness prompt, ``eval/prompts_sameness``):
  ``A`` when both state the same set of facts, else ``B`` (flipped when wrong).
- ``Response A (original):`` / ``Response B (candidate):`` (clear_judge): prefers the right
  one (a coin flip when both are right or both wrong).
- ``Correct response:`` (corrupt; corruptor): right → one true fact made wrong, between
  ``<changed>`` tags; wrong → the response unchanged.
- ``Proposed response:`` (clear_reflect*; certainty): ``C`` with probability ``unsure``, else
  A correct / B incorrect (flipped when wrong).
- anything else is a generation (direct, reasoning, reflection, sampler, and the old fresh
  context/reviewer answers): a response about the entity the last ``Question:``/``Prompt:``
  names, valid (random true facts, random sentences) or with one wrong fact; its values
  carry c. Replies end with ``Answer: <response>`` (which may span lines).

The request's entity is the first one named in its ``Prompt:`` or last ``Question:``
section. Unknown requests get HTTP 400. Reports built on this server say "simulation".

    python -m eval.open_sim WORLD.json [--accuracy 0.85] ...   # prints the base URL
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass

from robustft.config import ROLES

from .open_world import Fact, World
from .scripted_server import Reply, ScriptedServer
from .sim_server import SimParams, add_sim_args, sim_models

# section headers (at a line start) and the trailing questions some prompts end with
HEADERS = ("Prompt:", "Question:", "Reference response", "Response under audit:",
           "Correct response:",
           "Response to correct:", "Proposed correction:", "Problems found:", "Example ",
           "Response A (original):", "Response B (candidate):", "Proposed response:",
           "Response 1:", "Response 2:", "Now the question to answer:", "Candidate ",
           "Its reasoning:", "Previous reasoning:",
           "Which response is better", "Is the proposed response", "Are you really sure",
           "Do the two responses agree?", "Decide the final answer.", "Let's think step by step.",
           "Reflect on this reasoning")
_STOP = re.compile(r"^[ \t]*(?:" + "|".join(re.escape(h) for h in HEADERS) + ")", re.MULTILINE)
REASONED = ("reasoning", "reflection", "reviewer")  # roles whose replies reason first


# sections that end the message
LAST = ("Response to correct:", "Response under audit:", "Correct response:")


def section(text: str, header: str) -> str | None:
    """The text after the last line starting with ``header``, up to the next known header
    (to the end for a :data:`LAST` section; None when there is no such line). Whitespace
    around it is dropped."""
    found = list(re.finditer(rf"^[ \t]*{re.escape(header)}[ \t]*", text, re.MULTILINE))
    if not found:
        return None
    start = found[-1].end()
    stop = None if header in LAST else _STOP.search(text, start)
    return text[start:stop.start() if stop else len(text)].strip()


@dataclass
class OpenParams(SimParams):
    """SimParams plus: ``judge_unsure``: share of the judge's wrong verdicts that say unsure
    (C) instead of the flipped letter; ``miss``: share of wrong corrections of a wrong
    response that miss the error (UNCHANGED) instead of writing another wrong value.
    ``unsure`` is the certainty role's C share (as in sim_server); ``hard_share`` makes
    entities hard (every role right with ``hard_accuracy`` on them)."""

    judge_unsure: float = 0.3
    miss: float = 0.5

    def describe(self) -> str:
        return (super().describe() + f", judge unsure {self.judge_unsure}, "
                f"correction miss {self.miss}")


class OpenSimulator:
    """The script: request body -> :class:`Reply`."""

    def __init__(self, world: World, params: OpenParams):
        self.world, self.p = world, params
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    # ---- draws ---------------------------------------------------------------------------
    def _rng(self, role: str, body: dict) -> random.Random:
        content = json.dumps(body["messages"], sort_keys=True)
        n = 0
        if (body.get("temperature") or 0) > 0:
            key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            with self._lock:
                n = self.seen[key]
                self.seen[key] += 1
        digest = hashlib.sha256(content.encode()).hexdigest()[:16]
        return random.Random(f"{self.p.seed}|{role}|{digest}|{n}")

    def _draw(self, role: str, entity: str, rng: random.Random, n: int) -> tuple[bool, float]:
        """(right?, confidence) of one answer among ``n`` possible ones."""
        if rng.random() < self.p.of(role, entity):
            return True, rng.uniform(0.6, 0.99)
        if rng.random() < self.p.calibration:
            return False, rng.uniform(1 / n, 0.6)
        return False, rng.uniform(0.6, 0.99)

    # ---- dispatch ------------------------------------------------------------------------
    def __call__(self, body: dict) -> Reply:
        role = str(body.get("model", "")).removeprefix("sim-")
        if role not in ROLES:
            raise LookupError(f"simulator: unknown role {role!r}")
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        target = section(user, "Prompt:") or section(user, "Question:") or user
        entity = self.world.entity_in(target) or self.world.entity_in(user)
        if entity is None:
            raise LookupError(f"simulator: no entity of the world in {target[:80]!r}")
        rng = self._rng(role, body)
        if role == "corruptor":
            return self.plant(role, entity, section(user, "Correct response:") or "", rng)
        if (text := section(user, "Response to correct:")) is not None:
            return self.correct(role, entity, text, rng)
        if (text := section(user, "Response under audit:")) is not None:
            return self.verdict(role, entity, text, rng)
        if section(user, "Response 1:") is not None and section(user, "Response 2:") is not None:
            return self.sameness(role, entity, section(user, "Response 1:"),
                                 section(user, "Response 2:"), rng)
        if (a := section(user, "Response A (original):")) is not None:
            return self.judge(role, entity, a, section(user, "Response B (candidate):") or "",
                              rng)
        if (text := section(user, "Proposed response:")) is not None:
            return self.certainty(role, entity, text, rng)
        return self.generate(role, entity, rng)

    # ---- kinds ---------------------------------------------------------------------------
    def plant(self, role: str, entity: str, text: str, rng: random.Random) -> Reply:
        """The corruptor (canaries): right → one stated true fact changed to a wrong value
        (:meth:`World.corrupt`), between ``<changed>`` tags; wrong → the response back
        unchanged (nothing planted)."""
        right, _ = self._draw(role, entity, rng, 2)
        new, fact = self.world.corrupt(entity, text, rng) if right else (text, None)
        why = f"Changed the {fact.attribute}." if fact else "Nothing changed."
        return Reply(f"{why}\n<changed>{new}</changed>")

    def generate(self, role: str, entity: str, rng: random.Random) -> Reply:
        right, c = self._draw(role, entity, rng, 2)
        text = self.world.compose(entity, rng)
        wrong = None
        if not right:
            text, wrong = self.world.corrupt(entity, text, rng)
        lead = (f"Simulated step-by-step reasoning about {entity}.\n" if role in REASONED
                else "")
        reply = f"{lead}Answer: {text}"
        at = len(reply) - len(text)
        spans = [(at + f.start, at + f.end,
                  c if wrong is not None and f.start == wrong.start else rng.uniform(0.6, 0.99))
                 for f in self.world.stated(text)]
        return Reply(reply, spans=spans)

    def verdict(self, role: str, entity: str, text: str, rng: random.Random) -> Reply:
        errors = self.world.errors(entity, text)
        truth = "B" if errors else "A"
        right, c = self._draw(role, entity, rng, 3)
        letter = truth if right else ("C" if rng.random() < self.p.judge_unsure
                                      else "AB".replace(truth, ""))
        if letter == "B":
            f = errors[0] if errors else next(iter(self.world.stated(text)), None)
            true = self.world.entities[entity][f.attribute] if f else None
            why = (f"The response under audit says {f.value} for {entity}'s {f.attribute}, "
                   f"but it is {true}." if f and f.value != true else
                   f"The response under audit says {f.value} for {entity}'s {f.attribute}, "
                   "which looks wrong." if f else
                   f"The response under audit does not do what the prompt asks about {entity}.")
        elif letter == "A":
            why = f"Everything the response under audit states about {entity} is right."
        else:
            why = f"I cannot tell whether the response under audit is right about {entity}."
        return Reply(f"{why}\nAnswer: {letter}", _dist(letter, c, "ABC"))

    def sameness(self, role: str, entity: str, one: str, two: str,
                 rng: random.Random) -> Reply:
        same = ({(f.attribute, f.value) for f in self.world.stated(one)}
                == {(f.attribute, f.value) for f in self.world.stated(two)})
        right, c = self._draw(role, entity, rng, 2)
        letter = "A" if same == right else "B"
        why = "They make the same claims." if letter == "A" else "Their claims differ."
        return Reply(f"{why}\nAnswer: {letter}", _dist(letter, c, "AB"))

    def judge(self, role: str, entity: str, original: str, candidate: str,
              rng: random.Random) -> Reply:
        ok_a, ok_b = (self.world.is_right(entity, t) for t in (original, candidate))
        right, c = self._draw(role, entity, rng, 2)
        if ok_a == ok_b:  # both right or both wrong: neither is better
            letter = rng.choice("AB")
        else:
            better = "A" if ok_a else "B"
            letter = better if right else "AB".replace(better, "")
        return Reply(f"Simulated comparison.\nAnswer: {letter}", _dist(letter, c, "AB"))

    def certainty(self, role: str, entity: str, text: str, rng: random.Random) -> Reply:
        truth = "A" if self.world.is_right(entity, text) else "B"
        right, c = self._draw(role, entity, rng, 2)
        letter = ("C" if rng.random() < self.p.unsure else
                  truth if right else "AB".replace(truth, ""))
        return Reply(f"Simulated grading.\nAnswer: {letter}", _dist(letter, c, "ABC"))

    def correct(self, role: str, entity: str, text: str, rng: random.Random) -> Reply:
        w, truth = self.world, self.world.entities[entity]
        errors = w.errors(entity, text)
        right, c = self._draw(role, entity, rng, 2)
        edits: list[tuple[Fact, str]] = []  # (stated fact, new value)
        if right:
            edits = [(f, truth[f.attribute]) for f in errors]
        elif errors and rng.random() >= self.p.miss:
            f = errors[0]
            other = w.other_value(f, {truth[f.attribute]}, rng)
            edits = [(f, other)] if other else []
        elif not errors and (stated := w.stated(text)):
            f = rng.choice(stated)
            edits = [(f, w.other_value(f, set(), rng))]
        if not edits:
            why = f"Nothing in the response about {entity} is wrong."
            reply = f"{why}\nAnswer: UNCHANGED"
            return Reply(reply, spans=[(len(reply) - len("UNCHANGED"), len(reply), c)])
        out, spans, shift = text, [], 0
        head = "; ".join(f"{f.attribute} is {v}, not {f.value}" for f, v in edits)
        prefix = f"Corrected: {head}.\nAnswer: "
        for f, value in sorted(edits, key=lambda e: e[0].start):
            moved = Fact(f.attribute, f.value, f.start + shift, f.end + shift)
            out = w.replace(out, moved, value)
            spans.append((len(prefix) + moved.start, len(prefix) + moved.start + len(value), c))
            shift += len(value) - (f.end - f.start)
        return Reply(prefix + out, spans=spans)


def _dist(letter: str, c: float, letters: str) -> dict[str, float]:
    rest = [x for x in letters if x != letter]
    return {letter: c, **{x: (1 - c) / len(rest) for x in rest}}


class OpenSimServer(ScriptedServer):
    """The scripted server playing :class:`OpenSimulator`."""

    def __init__(self, sim: OpenSimulator):
        super().__init__(sim, models=[*sim_models().values()])
        self._handler.disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per reply


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("world", help="world JSON (eval/open_world.py's format)")
    add_sim_args(ap)
    ap.add_argument("--judge-unsure", type=float, default=0.3)
    ap.add_argument("--miss", type=float, default=0.5)
    a = ap.parse_args(argv)
    with OpenSimServer(OpenSimulator(World.load(a.world), params_of(a))) as s:
        print(s.base_url, flush=True)
        s.thread.join()


def params_of(a: argparse.Namespace) -> OpenParams:
    roles = {k: float(v) for k, v in (x.split("=", 1) for x in a.role_accuracy)}
    return OpenParams(a.accuracy, roles, a.calibration, a.unsure, a.seed, a.hard_share,
                      a.hard_accuracy, a.judge_unsure, a.miss)


if __name__ == "__main__":
    main()
