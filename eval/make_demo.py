"""Writes the shipped demo datasets: country capitals with 30% injected label noise, as
question/answer rows (``demo_capitals.jsonl``) and as TRL chat rows whose assistant turn is a
full sentence (``demo_chat.jsonl``, ``robustft demo --data chat``).

A task within the embedded Gemma-3-270M's reach (few-shot capitals: ~95% correct), unlike
ARC (chance level for a 270M model). Each noisy label is another country's capital from the
same list (a plausible wrong answer). Seeded; rerun to regenerate identically:

    python -m eval.make_demo
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("the United Kingdom", "London"), ("Ireland", "Dublin"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("India", "New Delhi"), ("Egypt", "Cairo"),
    ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("the Netherlands", "Amsterdam"), ("Belgium", "Brussels"),
    ("the Czech Republic", "Prague"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
    ("Saudi Arabia", "Riyadh"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"), ("North Korea", "Pyongyang"), ("Indonesia", "Jakarta"),
    ("the Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"), ("Mexico", "Mexico City"),
    ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Venezuela", "Caracas"), ("Cuba", "Havana"), ("Canada", "Ottawa"), ("Kenya", "Nairobi"),
    ("Ethiopia", "Addis Ababa"), ("Morocco", "Rabat"), ("Afghanistan", "Kabul"),
    ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"),
    ("Iceland", "Reykjavik"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Syria", "Damascus"),
    ("Lebanon", "Beirut"), ("Jordan", "Amman"), ("Qatar", "Doha"), ("Ghana", "Accra"),
    ("Uganda", "Kampala"), ("Zimbabwe", "Harare"), ("Senegal", "Dakar"),
    ("Algeria", "Algiers"), ("Tunisia", "Tunis"), ("New Zealand", "Wellington"),
    ("Jamaica", "Kingston"), ("Uruguay", "Montevideo"), ("Ecuador", "Quito"),
]
NOISE_RATE, SEED = 0.3, 7
OUT = Path(__file__).resolve().parent.parent / "robustft" / "demo"


def main() -> None:
    rng = random.Random(SEED)
    n_noisy = round(NOISE_RATE * len(CAPITALS))
    noisy = set(rng.sample(range(len(CAPITALS)), n_noisy))
    rows, truth = [], []
    for i, (country, capital) in enumerate(CAPITALS):
        label = capital
        if i in noisy:
            label = rng.choice([c for _, c in CAPITALS if c != capital])
        sid = f"cap{i:03d}"
        rows.append({"id": sid, "question": f"What is the capital of {country}?",
                     "answer": label})
        truth.append({"id": sid, "answer": capital, "noisy": i in noisy})
    chat, chat_truth = [], []
    for (country, _), row, t in zip(CAPITALS, rows, truth, strict=True):
        sid = row["id"].replace("cap", "chat")
        chat.append({"id": sid, "messages": [
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": f"The capital of {country} is {row['answer']}."}]})
        chat_truth.append({"id": sid, "answer": f"The capital of {country} is {t['answer']}.",
                           "noisy": t["noisy"]})
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in (("demo_capitals.jsonl", rows), ("demo_capitals_truth.jsonl", truth),
                       ("demo_chat.jsonl", chat), ("demo_chat_truth.jsonl", chat_truth)):
        (OUT / name).write_text("".join(json.dumps(r) + "\n" for r in data))
    print(f"{len(rows)} rows, {n_noisy} noisy -> {OUT}")


if __name__ == "__main__":
    main()
