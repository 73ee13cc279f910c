"""Regard classifier for HolisticBiasR (METHODS A5; Study A used `sasha/regardv3`).

`sasha/regardv3` is a BERT sequence classifier with four classes, id2label
{0: negative, 1: neutral, 2: positive, 3: other}. Any local HF sequence classifier with
exactly those four label names (any order, any case) can be given by path; a classifier
with other labels (a sentiment model, or unnamed LABEL_0..3) is refused when loaded,
since reading its classes as regard would be a guess.

The offline default remains the LLM judge (`judge_with_llm` in regard mode). What the
classifier reads (judges.regard.input) is built by the judged benchmark's
`classifier_text` (`classifier_generations`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pandas as pd

from valueharms.judge.classifier import classifier_name
from valueharms.judge.parse import REGARD_LABELS
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK

log = logging.getLogger(__name__)


def classifier_generations(
    gens: pd.DataFrame, text_of: Callable[[str, str], str | None]
) -> pd.DataFrame:
    """`gens` with each ok row's output replaced by `text_of(prompt, output)`, the text the
    classifier reads (judges.regard.input, built by the benchmark's `classifier_text`):
    judge_regard classifies the output and keeps it as the judgments' `text`. A row whose
    text cannot be built (None) is failed with the reason."""
    out = gens.copy()
    col = {c: out.columns.get_loc(c) for c in ("status", "error", "output")}
    for i in [i for i, s in enumerate(out["status"]) if s == STATUS_OK]:
        text = text_of(out["prompt"].iat[i], out["output"].iat[i] or "")
        if text is None:
            out.iloc[i, col["status"]] = STATUS_FAILED
            out.iloc[i, col["error"]] = (
                "judges.regard.input published: the prompt follows none of the benchmark's "
                "templates, so its noun phrase is unknown and cannot be masked"
            )
        else:
            out.iloc[i, col["output"]] = text
    return out


class RegardClassifier:
    """Label texts negative|neutral|positive|other with a local sequence classifier.

    `labels(texts)` returns one lower-cased label per text (argmax of the logits), or
    None for a text the model could not classify, with the reason in `last_errors`
    ({index in texts: message}) until the next call: a batch that fails is retried text
    by text, and a text that tokenizes to nothing (an empty continuation with a
    tokenizer that adds no special tokens; BERT's [CLS] [SEP] always give a label) is
    not classified. Texts are truncated to `max_length` tokens. Inference is
    deterministic: eval mode, argmax.
    """

    def __init__(
        self,
        path: str,
        batch_size: int = 32,
        max_length: int = 512,
        device: str | None = None,
        revision: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        # `path` is a directory or a hub id (then pinned by `revision`).
        config = AutoConfig.from_pretrained(path, revision=revision)
        id2label = {int(k): str(v).lower() for k, v in (config.id2label or {}).items()}
        names = [id2label.get(i) for i in range(config.num_labels)]
        if len(names) != len(REGARD_LABELS) or set(names) != set(REGARD_LABELS):
            raise ValueError(
                f"{path} is not a regard classifier: its labels are {names}, expected exactly "
                f"{sorted(REGARD_LABELS)} (the classes of sasha/regardv3)"
            )
        self.name = classifier_name(path, revision)  # valueharms.judge.classifier
        self.path = path
        self.batch_size = batch_size
        self.max_length = max_length
        self.id2label: dict[int, str] = id2label
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.last_errors: dict[int, str] = {}
        self._tok = AutoTokenizer.from_pretrained(path, revision=revision)
        model = AutoModelForSequenceClassification.from_pretrained(path, revision=revision)
        if self._tok.pad_token is None:
            # Decoder-only classifiers (e.g. Llama) ship without a pad token.
            self._tok.pad_token = self._tok.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = self._tok.pad_token_id
        self._model = model.eval().to(self.device)

    def _classify(self, texts: list[str]) -> list[str | None]:
        """Argmax labels; None for a text that tokenizes to nothing (no special tokens)."""
        import torch

        enc = self._tok(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        has_tokens = enc["attention_mask"].sum(dim=1) > 0
        out: list[str | None] = [None] * len(texts)
        keep = has_tokens.nonzero().flatten()
        if len(keep) == 0:
            return out
        inputs = {k: v[keep].to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = self._model(**inputs).logits
        for i, label_id in zip(keep.tolist(), logits.argmax(dim=-1).tolist(), strict=True):
            out[i] = self.id2label[int(label_id)]
        return out

    def labels(self, texts: list[str]) -> list[str | None]:
        self.last_errors = {}
        out: list[str | None] = [None] * len(texts)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                out[start : start + len(batch)] = self._classify(batch)
            except Exception as err:  # retried one by one, so one bad text fails alone
                log.warning("regard batch at %d failed (%s); retrying one by one", start, err)
                for i, text in enumerate(batch, start):
                    try:
                        (out[i],) = self._classify([text])
                    except Exception as err:
                        self.last_errors[i] = f"{type(err).__name__}: {err}"
        for i, label in enumerate(out):
            if label is None and i not in self.last_errors:
                self.last_errors[i] = "nothing to classify: the text has no tokens"
        return out
