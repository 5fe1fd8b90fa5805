"""Final fates of the processed samples, from their stored records (pure: records in, fate rows
out). The same functions serve a single-process run and a Ray run, whose selection cutoff is
computed over the candidates of every block.

RobustFT: relabeled samples compete in entropy selection (:mod:`robustft.methods.selection`);
CLEAR: confidence against γ, corrections adopted above η.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from robustft.config import Config
from robustft.methods.diff import changed_words
from robustft.methods.matching import exact_match
from robustft.methods.precision import PrecisionCut
from robustft.methods.selection import SelectionKey, selection_key
from robustft.methods.verdicts import confirmation
from robustft.pipeline.contract import FateRow
from robustft.pipeline.records import ClearRecord, RobustftRecord
from robustft.schemas import Fate, Stage


def final_by(config: Config) -> str:
    """Whose answer is the relabel: the reviewer's, or the context answer without reviewer."""
    return "reviewer" if config.relabel.reviewer else "context"


@dataclass
class Candidate:
    """A relabeled sample that competes in entropy selection (no error, answer parsed): only
    what selection and the reason need, so many of them stay small in memory."""

    id: str
    row: int
    original: str
    answer: str
    entropy: float | None
    entropy_source: str | None
    corrected: bool = False  # a long-form response corrected (not replaced)

    @property
    def key(self) -> SelectionKey:
        return selection_key(self.entropy, self.row)

    @property
    def story(self) -> str:
        """The start of its reason: the label change and the entropy."""
        if self.corrected:
            n = changed_words(self.original, self.answer)
            change = f"response corrected ({n} word{'s' if n != 1 else ''} changed)"
        else:
            change = (f"label {self.original} -> {self.answer}" if self.answer != self.original
                      else f"label {self.original} confirmed")
        e_txt = ("unknown" if self.entropy is None
                 else f"{self.entropy:.4f} ({self.entropy_source})")
        return f"{change}; entropy {e_txt}"


def _unchanged(proposal: str | None, original: str) -> bool | None:
    return None if proposal is None else exact_match(proposal, original, False)


def _not_corrected(r: RobustftRecord, config: Config) -> FateRow:
    """A long-form response the final correction returned unchanged: confirmed when most of
    the agents that looked at it found nothing wrong, else dropped (flagged, not fixable)."""
    original = r.sample.label
    proposals = [r.context_answer] if config.relabel.context else []
    if config.relabel.reviewer:
        proposals.append(r.reviewer_answer)
    changed = [None if (u := _unchanged(p, original)) is None else not u for p in proposals]
    ok, wrong, right = confirmation([j.get("verdict") for j in r.judgements], changed)
    votes = f"{right} of {wrong + right} agents found nothing wrong"
    if ok:
        return (r.id, Fate.CONFIRMED, f"flagged, but the correction found nothing wrong "
                f"and {votes}: confirmed as it was", original)
    return (r.id, Fate.RELABELED_DROPPED, f"flagged; the correction found nothing to fix, "
            f"but only {votes}: dropped", None)


def relabel_candidates(records: Iterable[RobustftRecord], config: Config
                       ) -> tuple[list[FateRow], list[Candidate]]:
    """Split relabeled records into final fates (errors, unparsed answers, long-form
    responses the correction left unchanged) and selection candidates, in input order."""
    by = final_by(config)
    out, candidates = [], []
    for r in records:
        answer = r.proposal(config)
        if r.errors:
            out.append((r.id, Fate.ERROR, "relabel: " + "; ".join(r.errors), None))
        elif answer is None:
            out.append((r.id, Fate.RELABELED_DROPPED, f"{by} reply unparsed", None))
        elif r.sample.long_form and _unchanged(answer, r.sample.label):
            out.append(_not_corrected(r, config))
        else:
            candidates.append(Candidate(r.id, r.row, r.sample.label, answer, r.entropy,
                                        r.entropy_source, corrected=r.sample.long_form))
    return out, candidates


def selected_fates(candidates: Iterable[Candidate], cutoff: SelectionKey | None,
                   beta: float) -> list[FateRow]:
    """Kept when the candidate's selection key is within ``cutoff`` (see
    :func:`robustft.methods.selection.cutoff_key`)."""
    out = []
    for c in candidates:
        if cutoff is not None and c.key <= cutoff:
            out.append((c.id, Fate.RELABELED_KEPT, f"{c.story} in lowest {beta:.0%}",
                        c.answer))
        else:
            out.append((c.id, Fate.RELABELED_DROPPED, f"{c.story} above the {beta:.0%} cutoff",
                        c.answer))
    return out


def precision_fates(candidates: Iterable[Candidate], cut: PrecisionCut,
                    agree: Mapping[str, bool] | None = None) -> list[FateRow]:
    """Kept when the candidate's entropy is known and within the precision cutoff: its
    agreement stratum's cutoff when the cut has strata (``agree``: candidate id -> whether
    the context and reviewer answers agreed)."""
    out = []
    for c in candidates:
        if cut.cutoff is None:
            out.append((c.id, Fate.RELABELED_DROPPED, f"{c.story}; {cut.reason}", c.answer))
            continue
        where, cutoff, fitted = "", cut.cutoff, ""
        if cut.strata is not None and agree is not None:
            stratum = cut.strata[int(agree[c.id])]
            where, cutoff = f" where {stratum['name']}", stratum["cutoff"]
            fitted = f"fitted accuracy ≥ {cut.accuracy:.3f}; "
        if cutoff is not None and c.entropy is not None and c.entropy <= cutoff:
            out.append((c.id, Fate.RELABELED_KEPT, f"{c.story} ≤ cutoff {cutoff:.4f}{where} "
                        f"({fitted}kept relabels' estimated precision {cut.estimate:.3f}"
                        + (f" (probes' fit {cut.fitted:.3f}, agreement model "
                           f"{cut.support:.3f})" if cut.support is not None else "")
                        + " ≥ "
                        f"target {cut.target:.2f}; 10% bootstrap quantile {cut.lower:.3f}"
                        + (f"; probe labels {cut.label_error:.2%} wrong, corrected for)"
                           if cut.label_error else ")"),
                        c.answer))
        elif cutoff is None:
            out.append((c.id, Fate.RELABELED_DROPPED, f"{c.story}; none kept{where} at "
                        f"precision {cut.target:.2f} (fitted accuracy below "
                        f"{cut.accuracy:.3f})", c.answer))
        else:
            out.append((c.id, Fate.RELABELED_DROPPED, f"{c.story} above the cutoff "
                        f"{cutoff:.4f}{where} for precision {cut.target:.2f}", c.answer))
    return out


def _why_dropped(r: ClearRecord, eta: float) -> str:
    if r.stage != Stage.CORRECTED:
        return "auto-correct off"
    if r.candidate is None:
        return "no parseable candidate"
    candidate = (f"the correction ({changed_words(r.sample.label, r.candidate)} "
                 "words changed)" if r.sample.long_form else f"candidate {r.candidate!r}")
    if r.judge_confidence is None:
        return f"{candidate} is the same answer"
    return f"{candidate} not adopted: judge confidence {r.judge_confidence:.3f} ≤ η {eta}"


def _clear_confirmed(r: ClearRecord) -> tuple[bool, str]:
    """A filtered long-form response the corrector returned unchanged: confirmed when most of
    the agents that looked at it (the judges of its sampled answers, the corrector) found
    nothing wrong, as RobustFT confirms (:func:`_not_corrected`)."""
    ok, wrong, right = confirmation([j.get("verdict") for j in r.judgements], [False])
    votes = f"{right} of {wrong + right} agents found nothing wrong"
    return ok, (f"the corrector found nothing wrong and {votes}: confirmed as it was" if ok
                else f"the corrector found nothing to fix, but only {votes}: dropped")


def clear_fates(records: Iterable[ClearRecord], gamma: float, eta: float,
                gamma_text: str | None = None) -> list[FateRow]:
    """clean (C ≥ γ), relabeled-kept (corrected: judge confidence > η), confirmed (a
    long-form response the corrector left unchanged, most agents agreeing), relabeled-dropped.
    ``gamma_text`` says where γ came from (default "γ <value>")."""
    g = gamma_text or f"γ {gamma:.3f}"
    out = []
    for r in records:
        if r.stage not in (Stage.SCORED, Stage.CORRECTED) or r.errors:
            continue
        conf, label = r.confidence, r.sample.label
        parts = (f"confidence {conf:.3f} (O={r.observed or 0:.3f}, "
                 f"S={r.certainty or 0:.3f})" if conf is not None else "confidence unknown")
        unchanged = (r.stage == Stage.CORRECTED and r.candidate is not None
                     and r.judge_confidence is None)
        if conf is not None and conf >= gamma:
            out.append((r.id, Fate.CLEAN, f"{parts} ≥ {g}", label))
        elif r.judge_confidence is not None and r.judge_confidence > eta:
            change = (f"({changed_words(label, r.candidate)} words changed)"
                      if r.sample.long_form else f"{label!r} -> {r.candidate!r}")
            out.append((r.id, Fate.RELABELED_KEPT, f"{parts} < {g}; corrected {change}: "
                        f"judge confidence {r.judge_confidence:.3f} > η {eta}", r.candidate))
        elif unchanged and r.sample.long_form:
            ok, why = _clear_confirmed(r)
            out.append((r.id, Fate.CONFIRMED if ok else Fate.RELABELED_DROPPED,
                        f"{parts} < {g}; {why}", label if ok else None))
        else:
            out.append((r.id, Fate.RELABELED_DROPPED, f"{parts} < {g}; "
                        + _why_dropped(r, eta), None))
    return out
