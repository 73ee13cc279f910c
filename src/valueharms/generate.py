"""Generation stage: benchmark prompts x a group of subjects (model + condition) -> answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from valueharms.failures import check_share
from valueharms.job import Job
from valueharms.judge.parse import first_sentence
from valueharms.llm.backends import BackendSetup
from valueharms.llm.cache import LLMCache, cached_generate
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Backend, Request, Sampling

GENERATIONS_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("model_id", pa.string()),
        ("condition", pa.string()),
        ("prompt_id", pa.string()),
        ("sample", pa.int64()),
        ("category", pa.string()),
        ("axis", pa.string()),
        ("descriptor", pa.string()),
        ("prompt", pa.string()),
        ("output", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("model_revision", pa.string()),
        ("cached", pa.bool_()),
    ]
)


# A stop rule (config benchmarks.<b>.stop.<kind>): "sentence", or stop strings.
StopRule = Literal["sentence"] | Sequence[str]
# Keys of a benchmark block that only the judge reads: not generate-job params.
JUDGE_KEYS = ("scored_text",)


def subject_kind(model_id: str, condition: str) -> str:
    """The kind of subject whose stop rule applies (config benchmarks.<b>.stop).

    From the ids valueharms.plan gives: <base>/vanilla is vanilla, or icl under an
    icl-<distribution> condition; <base>/vim/<d> vim; <base>/benign/<b> benign. A
    mitigation run (mit-*) is its model with a system prompt, so it follows that model's
    rule (vanilla or vim). Study B's value adapters (<base>/<method>-b<beta>/<value>) are
    preference; its vanilla model is vanilla under every setting.
    """
    if condition.startswith("icl-"):
        return "icl"
    family = model_id.split("/")[1]
    return family if family in ("vanilla", "vim", "benign") else "preference"


def apply_stop(text: str, rule: StopRule) -> str:
    """A continuation cut by its stop rule, after generation.

    Stop strings: the text before the earliest occurrence of any of them, the string
    dropped. Study A's code passed them to vLLM's `stop` (include_stop_str_in_output
    false), which returns the same text for the same tokens: decoding after the stop does
    not change what came before it. (vLLM looks for its strings in list order within
    one token's new text, so a token holding two, a period then a line break, could
    differ; Llama-2's tokenizer has no such token.) "sentence": our rule, the first
    sentence (valueharms.judge.parse.first_sentence) of the first line, leading line
    breaks skipped.
    """
    if isinstance(rule, str):
        if rule != "sentence":
            raise ValueError(f"unknown stop rule {rule!r}: 'sentence' or a list of strings")
        return first_sentence(text.lstrip("\n").split("\n")[0])
    cut = min((i for s in rule if (i := text.find(s)) != -1), default=len(text))
    return text[:cut]


def job_bench(bench: Mapping[str, Any], members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A generate job's `bench` param: the benchmark block without the judge's keys and
    with the stop rules of its members' kinds only, so changing how RTP is scored, or
    another kind's rule, reruns no generation."""
    kinds = {subject_kind(m["model_id"], m["condition"]) for m in members}
    out = {k: v for k, v in bench.items() if k not in JUDGE_KEYS}
    out["stop"] = {k: rule for k, rule in bench["stop"].items() if k in kinds}
    return out


def sampling_for(bench_cfg: dict, seed: int) -> Sampling:
    return Sampling(
        max_new_tokens=bench_cfg["max_new_tokens"],
        temperature=bench_cfg["temperature"],
        top_p=bench_cfg["top_p"],
        n=bench_cfg["samples"],
        seed=seed,
        choices=tuple(bench_cfg.get("choices") or ()),
    )


@dataclass(frozen=True)
class Member:
    """One subject of a generation job: a model (its adapter) under a condition.

    `system` is the condition's system text (ICL profile, mitigation or induction
    prompt), `categories` keeps only those prompt categories (a mitigation run's),
    `chat_template` overrides the model's chat flag (Study B: a base model prompted gets
    raw text, every other setting the template), `temperature` the benchmark's, `stop`
    how its continuations are cut (`apply_stop`; empty: not cut).
    """

    model_id: str
    condition: str
    adapter: str | None = None  # the adapter's name in the backend (None: the base)
    system: str | None = None
    categories: tuple[str, ...] | None = None
    chat_template: bool | None = None
    temperature: float | None = None
    stop: StopRule = ()


def build_requests(
    prompts: pd.DataFrame,
    template: str,
    sampling: Sampling,
    system: str | None = None,
    adapter: str | None = None,
    key_prefix: str = "",
    chat_template: bool | None = None,
) -> list[Request]:
    """One request per prompt; the system text (ICL profile, mitigation) goes first."""
    reqs = []
    for row in prompts.itertuples(index=False):
        user = template.format(prompt=row.prompt)
        messages = ((("system", system),) if system else ()) + (("user", user),)
        reqs.append(
            Request(
                f"{key_prefix}{row.prompt_id}",
                messages=messages,
                sampling=sampling,
                adapter=adapter,
                chat_template=chat_template,
            )
        )
    return reqs


def _member_prompts(prompts: pd.DataFrame, m: Member) -> pd.DataFrame:
    if m.categories is None:
        return prompts
    return prompts[prompts["category"].isin(m.categories)].reset_index(drop=True)


def _member_sampling(sampling: Sampling, m: Member) -> Sampling:
    if m.temperature is None:
        return sampling
    return replace(sampling, temperature=float(m.temperature))


def generate_members(
    prompts: pd.DataFrame,
    backend: Backend,
    cache: LLMCache,
    members: list[Member],
    template: str,
    sampling: Sampling,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Answer every prompt `sampling.n` times for each member, in one stream of batches.

    Requests are interleaved prompt by prompt across members, so one batch serves several
    adapters (and equal prompts pad alike). Each answer is cut by its member's stop rule.
    Failures are kept as failed rows; rows come out member by member, in `members` order.
    """
    own = [(_member_prompts(prompts, m), _member_sampling(sampling, m)) for m in members]
    per_member = [
        build_requests(
            rows,
            template,
            samp,
            m.system,
            m.adapter,
            key_prefix=f"{i}|" if len(members) > 1 else "",  # join keys unique per job
            chat_template=m.chat_template,
        )
        for i, (m, (rows, samp)) in enumerate(zip(members, own, strict=True))
    ]
    longest = max((len(r) for r in per_member), default=0)
    order = [r[j] for j in range(longest) for r in per_member if j < len(r)]
    desc = members[0].model_id if len(members) == 1 else f"{len(members)} subjects"
    with tqdm(total=len(order), desc=f"generate {desc}", unit="prompt") as bar:
        answers = cached_generate(backend, order, cache, batch_size, progress=bar.update)
    by_key = {r.key: a for r, a in zip(order, answers, strict=True)}
    rows = []
    for m, (member_rows, samp), reqs in zip(members, own, per_member, strict=True):
        revision = backend.identity(m.adapter)["revision"]
        for row, req in zip(member_rows.itertuples(index=False), reqs, strict=True):
            resp = by_key[req.key]
            texts = resp.texts if resp.status == STATUS_OK else [None] * samp.n
            for i, text in enumerate(texts):
                if text is not None and m.stop:
                    text = apply_stop(text, m.stop)
                rows.append(
                    {
                        "benchmark": row.benchmark,
                        "model_id": m.model_id,
                        "condition": m.condition,
                        "prompt_id": row.prompt_id,
                        "sample": i,
                        "category": row.category,
                        "axis": row.axis,
                        "descriptor": row.descriptor,
                        "prompt": row.prompt,
                        "output": text,
                        "status": resp.status,
                        "error": resp.error,
                        "model_revision": revision,
                        "cached": resp.cached,
                    }
                )
    return pd.DataFrame(rows, columns=GENERATIONS_SCHEMA.names)


def generate(
    prompts: pd.DataFrame,
    backend: Backend,
    cache: LLMCache,
    member: Member,
    template: str,
    sampling: Sampling,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One subject's answers (generate_members with one member)."""
    return generate_members(prompts, backend, cache, [member], template, sampling, batch_size)


# A benchmark's reader of a probe's scripted user turns from its prompts-table `prompt`.
TurnsOf = Callable[[str], list[str]]


@dataclass
class _Dialogue:
    """One sample of one member's scripted dialogue, as it goes (generate_dialogues)."""

    member: Member
    sampling: Sampling  # the member's; later turns draw one answer each
    sample: int
    turns: list[str]  # the scripted user turns, untemplated
    replies: list[str] = field(default_factory=list)  # the model's, cut by its stop rule
    error: str | None = None
    cached: bool = True

    def next_request(self, key: str, template: str) -> Request:
        """The next turn's request: the system text, each user turn so far through the
        template with this sample's reply after it, then the next user turn."""
        m, k = self.member, len(self.replies)
        msgs: list[tuple[str, str]] = [("system", m.system)] if m.system else []
        for turn, reply in zip(self.turns[:k], self.replies, strict=True):
            msgs += [("user", template.format(prompt=turn)), ("assistant", reply)]
        msgs.append(("user", template.format(prompt=self.turns[k])))
        # n=1 per sample; seed + sample so samples with equal histories stay distinct
        # draws (greedy: one seed, so equal requests share one cache entry).
        seed = self.sampling.seed + (0 if self.sampling.greedy else self.sample)
        samp = replace(self.sampling, n=1, seed=seed)
        return Request(
            key, tuple(msgs), sampling=samp, adapter=m.adapter, chat_template=m.chat_template
        )

    def fail(self, error: str | None) -> None:
        n = len(self.turns)
        why = error if isinstance(error, str) and error else "no answer"  # NaN in a str column
        self.error = f"turn {len(self.replies) + 1}/{n}: {why}" if n > 1 else why

    def shown(self) -> str:
        """The table's `prompt`: the dialogue before the final reply (or up to the failed
        turn) as a JSON list of [role, text], user turns untemplated."""
        asked = len(self.replies) + (1 if self.error else 0)
        msgs: list[list[str]] = []
        for j, turn in enumerate(self.turns[:asked]):
            msgs.append(["user", turn])
            if j < asked - 1:
                msgs.append(["assistant", self.replies[j]])
        return json.dumps(msgs, ensure_ascii=False)


def _next_turns(
    dialogues: list[_Dialogue],
    backend: Backend,
    cache: LLMCache,
    template: str,
    batch_size: int,
) -> None:
    """Ask every live dialogue's next turn in one stream of batches (one cache entry per
    turn); a failed turn fails its dialogue and no later turn is asked."""
    while live := [d for d in dialogues if d.error is None and len(d.replies) < len(d.turns)]:
        reqs = [d.next_request(str(i), template) for i, d in enumerate(live)]
        desc = f"generate turn {len(live[0].replies) + 1}"
        with tqdm(total=len(reqs), desc=desc, unit="prompt") as bar:
            answers = cached_generate(backend, reqs, cache, batch_size, progress=bar.update)
        for d, a in zip(live, answers, strict=True):
            if a.status != STATUS_OK or not a.texts:
                d.fail(a.error)
                continue
            text = a.texts[0]
            d.replies.append(apply_stop(text, d.member.stop) if d.member.stop else text)
            d.cached = d.cached and a.cached


def generate_dialogues(
    prompts: pd.DataFrame,
    backend: Backend,
    cache: LLMCache,
    members: list[Member],
    template: str,
    sampling: Sampling,
    turns_of: TurnsOf,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Scripted multi-turn probes (AnthroBench): each prompt's user turns (`turns_of`)
    answered turn by turn, every member and sample its own dialogue.

    Turn 1 is asked as generate_members asks a prompt (the same requests: a one-turn
    probe keeps its cache entries); turn k's request carries the dialogue so far
    (`_Dialogue.next_request`), so every turn is its own cache entry and a rerun is free.
    All dialogues' turn k go in one stream of batches. A failed turn fails the dialogue
    (error "turn k/N: ..."); no later turn is asked. One row per prompt, member and sample,
    as generate_members': `prompt` the dialogue before the final reply (`_Dialogue.shown`),
    `output` the final reply, `cached` whether every turn came from the cache.
    """
    turns = {r.prompt_id: turns_of(r.prompt) for r in prompts.itertuples(index=False)}
    if empty := [pid for pid, t in turns.items() if not t]:
        raise ValueError(f"prompts with no user turn: {empty[:5]}")
    first = prompts.assign(prompt=[turns[pid][0] for pid in prompts["prompt_id"]])
    rows = generate_members(first, backend, cache, members, template, sampling, batch_size)
    subject = {(m.model_id, m.condition): m for m in members}
    if len(subject) != len(members):
        raise ValueError("members of a generation job must be distinct subjects")
    dialogues = []
    for r in rows.itertuples(index=False):
        m = subject[(r.model_id, r.condition)]
        d = _Dialogue(m, _member_sampling(sampling, m), int(r.sample), turns[r.prompt_id])
        d.cached = bool(r.cached)
        if r.status == STATUS_OK:
            d.replies.append(r.output)
        else:
            d.fail(r.error)
        dialogues.append(d)
    _next_turns(dialogues, backend, cache, template, batch_size)
    rows["prompt"] = [d.shown() for d in dialogues]
    rows["output"] = [None if d.error else d.replies[-1] for d in dialogues]
    rows["status"] = [STATUS_FAILED if d.error else STATUS_OK for d in dialogues]
    rows["error"] = [d.error for d in dialogues]
    rows["cached"] = [d.cached for d in dialogues]
    return rows


def scripted_turns(prompts: pd.DataFrame) -> TurnsOf | None:
    """The user-turn reader of a benchmark whose prompts are scripted dialogues (its
    module's `user_turns`: AnthroBench's), None for a single-turn benchmark."""
    from valueharms import benchmarks

    names = set(prompts["benchmark"])
    if len(names) != 1 or (name := names.pop()) not in benchmarks.names():
        return None
    return getattr(benchmarks.module(name), "user_turns", None)


@dataclass(frozen=True)
class GenerateJob:
    """One generation job: a group of subjects of one base model, on one benchmark.

    `members` are Member fields, with `adapter` the adapter's directory (None: the base
    model); `model` serves the group's base model; `bench` is config
    `benchmarks.<benchmark>` (its `stop` rules by kind of subject: `subject_kind`).
    """

    prompts_path: str
    members: Sequence[Mapping[str, Any]]
    bench: Mapping[str, Any]
    template: str
    seed: int
    model: BackendSetup
    batch_size: int
    out: str
    max_failure_share: float = 1.0  # generation.max_failure_share


def run(job: GenerateJob) -> None:
    """Generation job for one group of subjects of one base model and benchmark.

    One backend loads the base once and every adapter of the group onto it. The whole
    group's rows go to `job.out`; the per-subject files are cut from it.
    """
    from valueharms.data.benchmarks import PROMPTS_SCHEMA
    from valueharms.io import read_table, write_table

    prompts = read_table(job.prompts_path, PROMPTS_SCHEMA)
    dirs = list(dict.fromkeys(m["adapter"] for m in job.members if m.get("adapter")))
    names = {d: f"adapter{i}" for i, d in enumerate(dirs)}
    group = []
    for m in job.members:
        fields = {**m, "adapter": names.get(m.get("adapter") or "")}
        if fields.get("categories") is not None:
            fields["categories"] = tuple(fields["categories"])
        rule = job.bench["stop"].get(subject_kind(m["model_id"], m["condition"]), ())
        fields["stop"] = rule if isinstance(rule, str) else tuple(rule)
        group.append(Member(**fields))
    server = job.model.make({n: d for d, n in names.items()} or None)
    args = (prompts, server, LLMCache(job.model.cache_dir), group, job.template,
            sampling_for(dict(job.bench), job.seed))  # fmt: skip
    turns_of = scripted_turns(prompts)
    if turns_of is None:
        df = generate_members(*args, batch_size=job.batch_size)
    else:  # multi-turn probes: answered turn by turn
        df = generate_dialogues(*args, turns_of, batch_size=job.batch_size)
    failed = df["status"] != STATUS_OK
    errors = df.loc[failed, "error"].tolist()
    check_share(int(failed.sum()), len(df), job.max_failure_share, _BOUND, errors)
    write_table(job.out, df, GENERATIONS_SCHEMA)


_BOUND = "generation.max_failure_share"


def run_job(job: Job) -> None:
    """The generate rule's job (scripts/generate.py): its members' system prompts are
    built here, an ICL profile from its distribution file, a mitigation run's prompt from
    the correlation stage's pairs."""
    from valueharms.data.steps import target_of
    from valueharms.data.vim import icl_system_prompt
    from valueharms.mitigation import mitigation_run_prompt
    from valueharms.plan import drop_subject_files

    p = job.params
    benchmark = job.wildcards.get("benchmark")  # absent when a job is run by hand
    if benchmark:
        subjects = [(m["model_id"], m["condition"]) for m in p["members"]]
        drop_subject_files(benchmark, subjects, ["generations", "judgments"])
    members = []
    for m in p["members"]:
        m = dict(m)
        icl, pairs = m.pop("icl"), m.pop("pairs")
        if icl:
            m["system"] = icl_system_prompt(target_of(icl), p["icl_template"])
        if pairs:
            m["system"], m["categories"] = mitigation_run_prompt(
                job.input["mitigation_pairs"],
                m["model_id"],
                m["condition"],
                dict(p["mitigation_plan"]),
            )
        members.append(m)
    model = BackendSetup(
        members[0]["model_id"].split("/")[0],  # the base model of the group
        dict(p["model_spec"]),
        p["backend"],
        dict(p["backend_settings"]),
        job.input["base"],
        job.cache_dir,
        job.threads,
    )
    run(
        GenerateJob(
            job.input["prompts"],
            members,
            dict(p["bench"]),
            p["template"],
            p["seed"],
            model,
            p["batch_size"],
            job.output[0],
            p.get("max_failure_share", 1.0),
        )
    )
