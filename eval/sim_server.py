"""A simulated OpenAI-compatible endpoint for algorithm studies (multiple choice only).

It answers from the *true* labels: the role is the requested model name (``sim-direct``,
``sim-reviewer``, ...; see :func:`sim_models`), the question is the last ``Question:`` line of
the request. Each role answers correctly with probability ``accuracy[role]``; a wrong answer
is one of the other options, uniformly. The answer token's logprobs carry a confidence c
(the chosen option gets c, the others share 1 − c):

- correct answers: c ~ U(0.6, 0.99);
- wrong answers: with probability ``calibration`` c ~ U(1/n, 0.6) (the model knows it is
  unsure), else c ~ U(0.6, 0.99) (confidently wrong). calibration = 0 makes confidence useless
  for selection; 1 separates right from wrong perfectly.

CLEAR roles: ``certainty`` forms a belief the same way and calls the proposed response correct
(A) when it equals the belief, incorrect (B) otherwise, or not sure (C) with probability
``unsure``; ``judge`` prefers whichever of the two responses equals its belief (a coin flip
when neither does). Draws are seeded by (seed, role, question, n-th identical request), so
runs are reproducible and repeated samples of a sampled request differ.

Errors are independent across roles: real experts' errors correlate, which makes detection
harder than simulated here. ``hard_share`` makes a seeded share of the questions hard: every
role is right on them with probability ``hard_accuracy`` only, so errors correlate through the
question, hard questions are flagged more often than easy ones, and the clean rows (and the
probes drawn from them) are easier than the flagged rows. Reports built on this server say
"simulation".

Run it on its own: ``python -m eval.sim_server LABELED.csv [--accuracy 0.85] ...`` prints the
base URL and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from robustft.config import ROLES, DataConfig
from robustft.data.files import load_samples

from .scripted_server import Reply, ScriptedServer, mc_reply, target_question


def sim_models() -> dict[str, str]:
    """Role -> the model name that asks the simulator to play that role."""
    return {r: f"sim-{r}" for r in ROLES}


@dataclass
class SimParams:
    accuracy: float = 0.85
    role_accuracy: Mapping[str, float] = field(default_factory=dict)
    calibration: float = 0.8
    unsure: float = 0.1
    seed: int = 0
    hard_share: float = 0.0
    hard_accuracy: float = 0.5

    def hard(self, question: str) -> bool:
        """Whether ``question`` is one of the hard ones (a seeded hash, the same every run)."""
        h = hashlib.sha256(f"{self.seed}|hard|{question}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2 ** 64 < self.hard_share

    def of(self, role: str, question: str = "") -> float:
        if self.hard_share and self.hard(question):
            return self.hard_accuracy
        return self.role_accuracy.get(role, self.accuracy)

    def describe(self) -> str:
        roles = ", ".join(f"{r}={a}" for r, a in sorted(self.role_accuracy.items()))
        return (f"accuracy {self.accuracy}" + (f" ({roles})" if roles else "")
                + f", calibration {self.calibration}, unsure {self.unsure}, seed {self.seed}"
                + (f", hard questions {self.hard_share:.0%} at accuracy {self.hard_accuracy}"
                   if self.hard_share else ""))


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


class Simulator:
    """The script: request body -> :class:`Reply`."""

    def __init__(self, truth: Mapping[str, tuple[str, list[str]]], params: SimParams):
        self.truth, self.p = dict(truth), params
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path, params: SimParams,
                  data: DataConfig | None = None) -> Simulator:
        samples, errors, shape = load_samples(path, data or DataConfig())
        if not shape.is_mc:
            raise ValueError(f"{path}: the simulator answers multiple-choice data only")
        if errors:
            raise ValueError(f"{path}: {errors[0].reason}")
        truth = {}
        for s in samples:
            truth.setdefault(_first_line(s.question), (s.label, s.letters))
        return cls(truth, params)

    def _rng(self, role: str, question: str, body: dict) -> random.Random:
        n = 0
        if (body.get("temperature") or 0) > 0:
            key = hashlib.sha256(repr(sorted(body.items())).encode()).hexdigest()
            with self._lock:
                n = self.seen[key]
                self.seen[key] += 1
        return random.Random(f"{self.p.seed}|{role}|{question}|{n}")

    def belief(self, role: str, question: str, truth: str, letters: list[str],
               rng: random.Random) -> tuple[str, float]:
        """(answer, confidence) of one simulated draw."""
        if rng.random() < self.p.of(role, question) or len(letters) < 2:
            return truth, rng.uniform(0.6, 0.99)
        wrong = rng.choice([x for x in letters if x != truth])
        if rng.random() < self.p.calibration:
            return wrong, rng.uniform(1 / len(letters), 0.6)
        return wrong, rng.uniform(0.6, 0.99)

    def __call__(self, body: dict) -> Reply:
        role = str(body.get("model", "")).removeprefix("sim-")
        question = target_question(body)
        if role not in ROLES or question not in self.truth:
            raise LookupError(f"simulator: unknown role {role!r} or question {question[:60]!r}")
        truth, letters = self.truth[question]
        rng = self._rng(role, question, body)
        answer, conf = self.belief(role, question, truth, letters, rng)
        user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        if role == "certainty":
            proposed = re.search(r"Proposed response:\s*(.*)", user)
            said = _first_line(proposed.group(1)) if proposed else ""
            verdict = ("C" if rng.random() < self.p.unsure else "A" if said == answer else "B")
            return Reply(f"Simulated grading.\nAnswer: {verdict}")
        if role == "judge":
            a = re.search(r"Response A \(original\):\s*(.*)", user)
            b = re.search(r"Response B \(candidate\):\s*(.*)", user)
            a_txt, b_txt = (_first_line(m.group(1)) if m else "" for m in (a, b))
            pick = "B" if b_txt == answer else "A" if a_txt == answer else rng.choice("AB")
            return Reply(f"Simulated comparison.\nAnswer: {pick}")
        if role in ("direct", "context"):
            return Reply(f"Answer: {answer}", mc_reply(answer, letters, conf).dist)
        return mc_reply(answer, letters, conf, reasoning="Simulated step-by-step reasoning.")


class SimServer(ScriptedServer):
    """The scripted server playing :class:`Simulator`; unknown questions get HTTP 400."""

    def __init__(self, sim: Simulator):
        super().__init__(sim, models=list(sim_models().values()))


def add_sim_args(ap: argparse.ArgumentParser) -> None:
    """The simulated roles' settings, shared by every simulated server's command line."""
    ap.add_argument("--accuracy", type=float, default=0.85)
    ap.add_argument("--role-accuracy", action="append", default=[], metavar="ROLE=ACC")
    ap.add_argument("--calibration", type=float, default=0.8)
    ap.add_argument("--unsure", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hard-share", type=float, default=0.0)
    ap.add_argument("--hard-accuracy", type=float, default=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("truth", help="CSV/JSONL/Parquet with the true labels")
    add_sim_args(ap)
    a = ap.parse_args()
    roles = {k: float(v) for k, v in (x.split("=", 1) for x in a.role_accuracy)}
    params = SimParams(a.accuracy, roles, a.calibration, a.unsure, a.seed, a.hard_share,
                       a.hard_accuracy)
    with SimServer(Simulator.from_file(a.truth, params)) as s:
        print(s.base_url, flush=True)
        s.thread.join()


if __name__ == "__main__":
    main()
