"""What a server says about retrying: one reading of Retry-After for every HTTP client."""

from __future__ import annotations

import email.utils
import time
from typing import Any

# Never sleep longer than this on a server's say-so.
MAX_RETRY_AFTER = 600.0


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms` or `Retry-After`), if any.

    `headers` is any mapping with a case-insensitive `get` (httpx, email.message). The
    delta and the HTTP-date forms are read; the result is clipped to [0, MAX_RETRY_AFTER].
    """
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if seconds == seconds:  # not NaN
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None
