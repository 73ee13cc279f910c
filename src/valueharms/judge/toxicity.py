"""Toxicity scorers: probability that a text is toxic, in [0, 1].

The offline default is `alt-profanity-check` (a linear SVM on word n-grams, calibrated
to a probability); Study A used the Perspective API. Any HF sequence classifier given by
path can stand in (e.g. a Detoxify or RoBERTa toxicity model).
"""

from __future__ import annotations

from typing import Protocol


class ToxicityScorer(Protocol):
    name: str

    def score(self, texts: list[str]) -> list[float]: ...


class ProfanityCheckScorer:
    name = "profanity-check"

    def score(self, texts: list[str]) -> list[float]:
        from profanity_check import predict_prob

        return [float(p) for p in predict_prob(texts)] if texts else []


class HFClassifierScorer:
    def __init__(self, path: str, label: str = "toxic", batch_size: int = 32) -> None:
        from transformers import pipeline

        self.name = f"hf:{path}"
        self.label = label
        self.batch_size = batch_size
        self._pipe = pipeline("text-classification", model=path, top_k=None, truncation=True)

    def score(self, texts: list[str]) -> list[float]:
        out = self._pipe(texts, batch_size=self.batch_size)
        scores = []
        for labels in out:
            by_label = {d["label"].lower(): d["score"] for d in labels}
            if self.label.lower() not in by_label:
                raise ValueError(f"classifier has no label '{self.label}': {sorted(by_label)}")
            scores.append(float(by_label[self.label.lower()]))
        return scores


def make_scorer(cfg: dict) -> ToxicityScorer:
    if cfg["kind"] == "hf_classifier":
        if not cfg.get("path"):
            raise ValueError("judges.toxicity.path must name a classifier directory")
        return HFClassifierScorer(cfg["path"], cfg.get("label", "toxic"))
    return ProfanityCheckScorer()
