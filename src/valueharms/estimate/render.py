"""The estimate as a readable text report (valueharms.estimate.Estimate.text)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valueharms.estimate.stages import TRAINING, Line


def num(x: float | None) -> str:
    """A count or token figure, short: 950, 12.3k, 4.56M, 7.89B, 1.23T."""
    if x is None:
        return "?"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.4g}" if x != int(x) else f"{int(x)}"


def hours(h: float | None) -> str:
    if h is None:
        return "?"
    return "0" if h == 0 else ("<0.1" if h < 0.1 else f"{h:,.1f}")


def usd(x: float | None) -> str:
    if x is None:
        return "?"
    return f"${x:,.0f}" if x >= 10 else f"${x:,.2f}"


def size(b: float) -> str:
    for div, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if b >= div:
            return f"{b / div:.3g} {unit}"
    return f"{b:.0f} B"


def origin(line: Line) -> str:
    return line.source or "-"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, text_last: bool = False
) -> list[str]:
    """Aligned columns: the first `left` (and the last, if `text_last`) to the left, the
    figures to the right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: Sequence[str]) -> str:
        cells = [
            str(c).ljust(w) if i < left or (text_last and i == len(widths) - 1) else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *[fmt(r) for r in rows]]


def _training(lines: list[Line]) -> list[str]:
    rows = [
        [x.stage, x.name, num(x.count), num(x.examples), f"{x.epochs:.3g}" if x.epochs else "-",
         f"{x.tokens_per_example:.0f}" if x.tokens_per_example else "-",
         num(x.tokens / x.count if x.count else 0), num(x.tokens), hours(x.gpu_hours),
         size(x.disk_bytes), origin(x)]
        for x in lines
    ]  # fmt: skip
    head = ["stage", "item", "adapters", "examples/adapter", "epochs", "tokens/example",
            "tokens/adapter", "tokens", "GPU-h", "adapters on disk", "lengths"]  # fmt: skip
    return table(head, rows, left=2, text_last=True)


def _generation(lines: list[Line]) -> list[str]:
    rows = [
        [x.name, num(x.count), num(x.examples), f"{x.tokens_per_example:.0f}", num(x.input_tokens),
         num(x.tokens), hours(x.gpu_hours), origin(x)]
        for x in lines
    ]  # fmt: skip
    head = ["benchmark", "subjects", "prompts", "tokens/prompt", "prompt tokens",
            "generated tokens (max)", "GPU-h", "lengths"]  # fmt: skip
    return table(head, rows, text_last=True)


def _calls(lines: list[Line]) -> list[str]:
    rows = [
        [x.stage, x.name, x.where, num(x.count), num(x.input_tokens), num(x.output_tokens),
         num(x.output_tokens_typical), hours(x.gpu_hours) if x.where != "API" else "-",
         usd(x.usd) if x.where == "API" else "-", usd(x.usd_typical) if x.where == "API" else "-"]
        for x in lines
    ]  # fmt: skip
    head = ["stage", "judge / step (benchmark)", "where", "calls", "input tokens", "output (max)",
            "output (typical*)", "GPU-h", "USD (max)", "USD (typical*)"]  # fmt: skip
    return table(head, rows, left=3)


def _qa(lines: list[Line]) -> list[str]:
    rows = [
        [x.name, num(x.count), num(x.examples), num(x.tokens_per_example), num(x.input_tokens),
         num(x.tokens), hours(x.gpu_hours)]
        for x in lines
    ]  # fmt: skip
    head = ["lm-eval task", "runs", "docs/run", "scored tokens/doc", "scored tokens",
            "generated (max)", "GPU-h"]  # fmt: skip
    return table(head, rows)


def _disk(lines: list[Line]) -> list[str]:
    rows = [
        [x.name, f"{num(x.count)} {x.unit}" if x.count else "-", size(x.disk_bytes)] for x in lines
    ]
    return table(["what", "count", "disk"], rows, left=2)


def _totals(t: dict[str, Any], est: Any) -> list[str]:
    lower = "" if t["gpu_hours_complete"] else " (a lower bound: some parts unknown, see the notes)"
    out = [
        f"training: {num(t['adapters'])} adapters, {num(t['training_tokens'])} tokens",
        f"generation: at most {num(t['generated_tokens_max'])} generated tokens",
        f"GPU-hours on {est.gpu.label}: {hours(t['gpu_hours'])}{lower}",
    ]
    out += [f"  {stage}: {hours(h)}" for stage, h in t["gpu_hours_by_stage"].items()]
    price_date = est.prices.get("date")
    out += [
        f"API: {num(t['api_calls'])} calls, {num(t['api_input_tokens'])} input tokens, "
        f"at most {num(t['api_output_tokens_max'])} output tokens",
        f"API cost: at most {usd(t['usd_max'])}, typically {usd(t['usd_typical'])} "
        f"(prices as of {price_date}: check them)"
        + ("" if t["usd_complete"] else "; some models have no price: left out"),
        f"local LLM and scorer calls: {num(t['local_llm_calls'])}",
        f"disk: about {size(t['disk_bytes'])}",
    ]
    return out


def _grouped(pairs: list[tuple[str, str]]) -> list[str]:
    """`- [lines] text` once per text, naming the lines it applies to."""
    by_text: dict[str, list[str]] = {}
    for where, note in pairs:
        if note:
            by_text.setdefault(note, []).append(where)
    out = []
    for note, where in by_text.items():
        names = ", ".join(where) if len(where) <= 3 else f"{where[0]} and {len(where) - 1} more"
        out.append(f"- [{names}] {note}")
    return out


def _notes(est: Any) -> list[str]:
    """Each line's notes, then where its lengths came from (measured files, assumed
    defaults), then the estimate's own notes."""
    notes = [(f"{x.stage}: {x.name}", n) for x in est.lines for n in x.notes]
    lengths = [(f"{x.stage}: {x.name}", f"lengths {x.lengths}") for x in est.lines if x.lengths]
    return _grouped(notes) + _grouped(lengths) + [f"- {n}" for n in est.notes]


def text(est: Any) -> str:
    """The report: one table per kind of stage, the totals, then the notes."""
    g, mfu = est.gpu, est.settings["mfu"]
    out = [
        "valueharms cost estimate: " + (" + ".join(est.config_files) or "(config given as data)"),
        f"GPU: {g.label}, {g.bf16_tflops:g} TFLOP/s peak dense bf16; MFU {mfu['training']:g} "
        f"training, {mfu['generation']:g} generation",
        f"Token lengths: {est.token_method}, measured from the data files found here; "
        "ASSUMED = a declared default (resources/estimate/datasets.yaml), no file here",
        f"API prices as of {est.prices.get('date')} ({est.prices.get('unit', '')}): "
        "check them before relying on a dollar figure",
        "",
    ]
    sections = [
        ("Training (LoRA)", TRAINING, _training),
        ("Generation (upper bound: every reply runs to max_new_tokens)", ("generation",),
         _generation),
        ("LLM calls and scorers (* typical: assumed reply lengths)",
         ("judging", "judge agreement", "Study B data"), _calls),
        ("Study B eval: lm-eval QA (assumed task sizes)", ("Study B eval",), _qa),
        ("Disk (rough)", ("disk",), _disk),
    ]  # fmt: skip
    for title, names, fn in sections:
        lines = est.stage_lines(*names)
        if lines:
            out += [title, *fn(lines), ""]
    out += ["Totals", *_totals(est.totals(), est), "", "Notes", *_notes(est)]
    return "\n".join(out) + "\n"
