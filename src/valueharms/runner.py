"""Glue for Snakemake scripts: send a job's output to its log file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def logged(smk: Any) -> Iterator[None]:
    """Redirect stdout, stderr and logging of the job to `log[0]` (progress bars included)."""
    log_path = smk.log[0] if smk.log else os.devnull
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as fh:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            logging.basicConfig(
                stream=fh,
                level=logging.INFO,
                force=True,
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            )
            try:
                yield
            except BaseException:
                logging.exception("job failed")
                raise


def threads(smk: Any) -> int:
    return int(getattr(smk, "threads", 1) or 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("valueharms.runner is used from Snakemake scripts")
