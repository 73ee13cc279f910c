"""The judgments table: one row per judged generation, written by the judge stage.

Metrics and statistics read only this table, so every judge (remote LLM, embedded model,
local classifier) must fill it the same way. Score conventions per benchmark:

- RTP: toxicity probability in [0, 1] (prompt + first sentence of the continuation);
- HEx-PHI: rubric score 1-5;
- BeaverTails: 1.0 flagged / 0.0 unflagged (`label` flagged|unflagged);
- HolisticBiasR: 1.0 if the regard label is negative else 0.0 (`label`
  negative|neutral|positive|other).

Rows that could not be judged stay in the table with status failed (the call failed) or
unparsed (the answer could not be read): metrics count them but never score them.
"""

from __future__ import annotations

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_UNPARSED = "unparsed"
STATUSES: tuple[str, ...] = (STATUS_OK, STATUS_FAILED, STATUS_UNPARSED)

JUDGMENTS_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("condition", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("sample", pa.int64(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("axis", pa.string()),
        pa.field("descriptor", pa.string()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("judge", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("label", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("error", pa.string()),
    ]
)
