"""Generation, judging, Study B's extraction and verification, and lm-eval: lines of the
estimate for every stage that calls a model rather than training one (FLOP model in
valueharms.estimate.stages)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from valueharms import benchmarks
from valueharms.estimate import measure
from valueharms.estimate.stages import FORWARD, Context, Line, _flops, source_label
from valueharms.estimate.tables import ModelSize, model_size, price


@dataclass(frozen=True)
class Answers:
    """What one benchmark's generation produced, as its judge reads it."""

    calls: float  # samples generated (prompts x samples, over every subject)
    turns: float  # user turns per prompt (multi-turn probes)
    prompt_tokens: float  # one user turn, in the benchmark's template
    max_new: int  # the bound on every reply


def _system_tokens(ctx: Context, member: dict[str, Any]) -> float:
    """Tokens of a subject's system text: an induction or mitigation prompt, or the ICL
    profile (built here from the first distribution: its length barely varies)."""
    if member["system"]:
        return ctx.tokens(member["system"])
    if not member["icl"]:
        return 0.0

    def icl() -> float:
        from valueharms.data.vim import icl_system_prompt

        spec = next(iter(ctx.plan.dists.values()))
        scores = spec.get("scores") or spec.get("anchor_scores")
        return ctx.tokens(icl_system_prompt(scores, ctx.plan.templates["icl.template"]))

    return ctx.cached("icl", icl)


def _item_prompts(data: measure.Lengths, bench: str, member: dict[str, Any]) -> float:
    """Prompts one subject answers: all, or a mitigation run's categories only."""
    cats = member["categories"]
    if not cats:
        return float(data.rows)
    counts = data.extra.get("categories") or {}
    if counts:
        return float(sum(counts.get(c, 0) for c in cats))
    known = benchmarks.get(bench).categories
    return data.rows * len(cats) / len(known) if known else float(data.rows)


def generation_line(ctx: Context, bench: str, items: list[Any]) -> Line:
    """Prompts x samples x max_new_tokens per subject (x turns of a multi-turn probe): an
    upper bound, since a reply may stop before its budget. Prompt tokens are the user
    turns (each turn re-reads the dialogue so far) and any system text. A greedy subject
    (temperature 0) decodes one sample and repeats it, as the backends do."""
    data, cfg = ctx.prompts(bench), ctx.config["benchmarks"][bench]
    samples, max_new, n_choices = cfg["samples"], cfg["max_new_tokens"], len(cfg["choices"])
    turns, pm = float(data.extra.get("turns", 1.0)), data.mean()
    gen = pre = calls = flops = requests = 0.0
    unknown = False
    for it in items:
        member = ctx.plan.member_params(it)
        temperature = cfg["temperature"] if member["temperature"] is None else member["temperature"]
        draws = samples if temperature > 0 else 1
        n = _item_prompts(data, bench, member) * draws
        history = turns * (turns + 1) / 2 * pm + turns * (turns - 1) / 2 * max_new
        p = history + turns * _system_tokens(ctx, member)
        out = 0.0 if n_choices else turns * max_new
        if n_choices:  # likelihoods of each answer: one forward pass per choice
            p *= n_choices
        f = _flops(ctx.size(it.base), FORWARD, n * (p + out))
        unknown |= f is None
        flops += f or 0.0
        calls, gen, pre = calls + n * samples / draws, gen + n * out, pre + n * p
        requests += n / draws
    ctx.answers[bench] = Answers(calls, turns, pm, max_new)
    line = Line(
        "generation", bench, None, "GPU", len(items), "subjects", data.rows, None, pm,
        tokens=gen, input_tokens=pre, requests=requests, flops=None if unknown else flops,
        gpu_hours=None if unknown else ctx.hours(flops, "generation"),
        lengths=data.origin, source=source_label([data.origin]), assumed=data.assumed,
    )  # fmt: skip
    line.notes.append(f"{samples} sample(s) x {max_new} new tokens per prompt (upper bound)")
    if samples > 1 and cfg["temperature"] <= 0:
        line.notes.append("greedy: one sample decoded per prompt, repeated")
    if n_choices:
        line.notes.append(f"choice mode: {n_choices} answers scored, nothing decoded")
    if turns > 1:
        line.notes.append(f"{turns:.1f} user turns per probe")
    return line


def generation_lines(ctx: Context) -> list[Line]:
    by_bench: dict[str, list[Any]] = {}
    for it in ctx.plan.gen_items:
        by_bench.setdefault(it.benchmark, []).append(it)
    return [generation_line(ctx, b, items) for b, items in by_bench.items()]


# --- LLM calls: judges, extractor, verifier ----------------------------------------------


@dataclass(frozen=True)
class LlmCalls:
    """`calls` requests to one LLM, `input` prompt tokens each, and its output bound."""

    stage: str
    name: str
    model: str
    settings: dict[str, Any]  # max_new_tokens and mode of the block that sends them
    calls: float
    input: float
    kind: str  # the judge kind, for the typical reply length


def llm_line(ctx: Context, c: LlmCalls) -> Line:
    """Calls to an API model (dollars) or a local one (GPU-hours). Output tokens are the
    bound each call may use (a reasoning model's completion budget), and a typical reply
    length (assumed) beside it."""
    spec = ctx.config["models"][c.model]
    api = spec.get("source") == "api"
    typical_table = ctx.defaults["typical_output_tokens"]
    choice = c.settings.get("mode") == "choice"
    out = 0.0 if choice else float(c.settings["max_new_tokens"])
    typical = 0.0 if choice else float(typical_table.get(c.kind, typical_table["default"]))
    if api and spec.get("reasoning"):
        out = max(out, float(ctx.config["backends"]["openai"]["reasoning_budget"]))
        typical += float(typical_table["reasoning"])
    typical = min(typical, out)
    line = Line(
        c.stage, c.name, c.model, "API" if api else "GPU", round(c.calls), "calls",
        tokens=c.calls * c.input, input_tokens=c.calls * c.input,
        output_tokens=c.calls * out, output_tokens_typical=c.calls * typical, requests=c.calls,
        source="typical ASSUMED", assumed=True,
    )  # fmt: skip
    if api:
        line.flops = line.gpu_hours = None
        p = price(ctx.config, c.model, ctx.prices)
        if p.input is None or p.output is None:
            line.notes.append(f"no price for {p.name} in the price table: USD left out")
        else:
            unit = p.factor / 1e6
            line.usd = (line.input_tokens * p.input + line.output_tokens * p.output) * unit
            line.usd_typical = (
                line.input_tokens * p.input + line.output_tokens_typical * p.output
            ) * unit
            if p.factor != 1.0:
                line.notes.append(f"Batch API: x{p.factor:g} of the standard price")
        if spec.get("base_url"):
            line.notes.append(
                f"served at {spec['base_url']}: a self-hosted model costs GPU time instead"
            )
        return line
    line.flops = _flops(ctx.size(c.model), FORWARD, line.input_tokens + line.output_tokens)
    line.gpu_hours = ctx.hours(line.flops, "generation")
    if choice:
        line.notes.append("choice mode: answers scored by likelihood, nothing decoded")
    return line


def _classifier_size(ctx: Context, settings: dict[str, Any]) -> ModelSize:
    size = model_size(ctx.config, settings.get("hf_id") or "")
    if size.params is None:
        b = float(ctx.defaults["classifier_params_b"])
        return ModelSize("classifier", b, None, f"assumed: classifier_params_b {b:g}")
    return size


def scorer_line(
    ctx: Context, bench: str, spec: Any, a: Answers, stage: str = "judging", n: float | None = None
) -> Line:
    """A judge that is no LLM: the Perspective API, a local classifier or a word list, on
    `n` of the benchmark's answers (all of them by default)."""
    s = spec.settings
    n = a.calls if n is None else n
    text = a.prompt_tokens + a.max_new  # prompt + continuation, the continuation at its bound
    line = Line(stage, f"{spec.name} ({bench})", None, "CPU", round(n), "calls")
    line.input_tokens = line.tokens = n * text
    if s["kind"] == "perspective":
        line.where, line.flops, line.gpu_hours = "API", None, None
        line.usd = line.usd_typical = n * float(ctx.prices["perspective"]["per_call"])
        hours = n / float(s["qps"]) / 3600.0
        line.notes.append(
            f"Perspective API: free but rate-limited; at {s['qps']:g} request/s that is "
            f"{hours:,.0f} hours for one key"
        )
    elif s["kind"] == "hf_classifier":
        size = _classifier_size(ctx, s)
        line.where, line.model = "GPU", size.model
        line.flops = _flops(size, FORWARD, line.input_tokens)
        line.gpu_hours = ctx.hours(line.flops, "generation")
        line.notes.append(f"classifier {size.params_b:g}B parameters ({size.origin})")
        line.assumed = size.origin.startswith("assumed")
    else:
        line.flops = line.gpu_hours = 0.0
        line.notes.append("runs on the CPU; negligible")
    return line


def _judge_line(ctx: Context, stage: str, bench: str, spec: Any, calls: float) -> Line:
    """`calls` judged answers of `bench` by `spec` (a JudgeSpec): a scorer's line, or an
    LLM judge's (one call per behaviour for AnthroBench in choice mode)."""
    cfg, a = ctx.config, ctx.answers[bench]
    model, settings, template = spec.model, spec.settings, spec.template
    if model is None and spec.kind == "regard" and settings["kind"] == "llm":
        model, settings = cfg["judges"]["llm"]["model"], cfg["judges"]["llm"]
        template = ctx.plan.templates.get("judges.templates.regard")
    if model is None:
        return scorer_line(ctx, bench, spec, a, stage, calls)
    if spec.kind == "anthro" and settings["mode"] == "choice":  # one call per behaviour
        calls *= len(getattr(benchmarks.module(bench), "BEHAVIOURS", ())) or 1
    dialogue = a.turns * (a.prompt_tokens + a.max_new)  # the judged text, at its bound
    inp = ctx.tokens(template) + dialogue
    name = f"{spec.name} ({bench})"
    return llm_line(ctx, LlmCalls(stage, name, model, settings, calls, inp, spec.kind))


def judge_lines(ctx: Context) -> list[Line]:
    """One line per judged benchmark (the alignment check is parsed, not judged), and
    one per benchmark judge agreement compares: its second judge on the sample."""
    lines = []
    for bench, spec in ctx.plan.judges.items():
        a = ctx.answers.get(bench)
        if a is None or benchmarks.get(bench).role == "alignment":
            continue
        lines.append(_judge_line(ctx, "judging", bench, spec, a.calls))
    for bench, agr in ctx.plan.agreement.items():
        a = ctx.answers.get(bench)
        if a is not None:  # the seeded sample: n generations, or all there are
            sample = min(float(agr.settings.n), a.calls)
            lines.append(_judge_line(ctx, "judge agreement", bench, agr.second, sample))
    return lines


def studyb_data_lines(ctx: Context) -> list[Line]:
    """Study B's extraction (every response of every pair) and verification (the chosen
    response of every subset pair: an upper bound, a response in two subsets is asked once)."""
    sbp, sb = ctx.plan.sb, ctx.config["studyb"]
    if not sbp.enabled:
        return []
    pool = ctx.cached(
        "pool", lambda: measure.preference_lengths(ctx.plan, ctx.counter, ctx.defaults)
    )
    sizes = ctx.cached("subsets", lambda: measure.subset_sizes(ctx.plan, pool, ctx.defaults))
    pairs = sum(p.rows for p in pool.values())
    seq = sum(p.rows * p.mean() for p in pool.values()) / pairs if pairs else 0.0
    inp = ctx.tokens(ctx.plan.sb_templates["extract"]) + seq
    out = [llm_line(ctx, LlmCalls(
        "Study B data", "value extraction", sbp.extract_model, sb["extract"], 2 * pairs, inp,
        "values",
    ))]  # fmt: skip
    if sbp.verify:
        inp = ctx.tokens(ctx.plan.sb_templates["verify"]) + seq
        n = sum(s[0] for s in sizes.values())
        out.append(llm_line(ctx, LlmCalls(
            "Study B data", "verification", sbp.verify_model, sb["verify"], n, inp, "verify",
        )))  # fmt: skip
    assumed = any(p.assumed for p in pool.values())
    for line in out:
        line.assumed = line.assumed or assumed
        line.lengths = "; ".join(sorted({p.origin for p in pool.values()}))
        line.source = "pairs " + source_label([p.origin for p in pool.values()])
    return out


def qa_lines(ctx: Context) -> list[Line]:
    """lm-eval (Table 8): each task's documents x (scored tokens + generated tokens, at
    the task's generation bound) for every QA run (a model or an adapter)."""
    sbp, qa = ctx.plan.sb, ctx.config["studyb"]["qa"]
    if not sbp.qa:
        return []
    lines = []
    for task in qa["tasks"]:
        row = (ctx.defaults.get("lm_eval") or {}).get(task)
        line = Line("Study B eval", task, None, "GPU", len(sbp.qa), "runs", assumed=True)
        if row is None:
            line.flops = line.gpu_hours = None
            line.notes.append("task not in resources/estimate/datasets.yaml lm_eval: not estimated")
            lines.append(line)
            continue
        docs = int(row["docs"])
        limit = qa["limit"]
        if limit:
            docs = (
                round(docs * limit)
                if limit < 1
                else min(docs, int(limit) * int(row.get("subtasks", 1)))
            )
        fwd, gen = float(row["forward_tokens"]), float(row["generated_tokens"])
        flops, unknown = 0.0, False
        for r in sbp.qa:
            f = _flops(ctx.size(r["model"]), FORWARD, docs * (fwd + gen))
            unknown |= f is None
            flops += f or 0.0
        line.examples, line.tokens_per_example = docs, fwd
        line.tokens, line.input_tokens = len(sbp.qa) * docs * gen, len(sbp.qa) * docs * fwd
        line.flops = None if unknown else flops
        line.gpu_hours = None if unknown else ctx.hours(flops, "generation")
        line.lengths, line.source = f"assumed: lm_eval.{task}", "ASSUMED"
        line.notes.append(str(row.get("note", "")))
        lines.append(line)
    return lines
