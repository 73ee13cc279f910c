"""Generation stage: benchmark prompts x a group of subjects (model + condition) -> answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from valueharms.job import Job
from valueharms.judge.parse import first_sentence
from valueharms.llm.backends import BackendSetup
from valueharms.llm.cache import LLMCache, cached_generate
from valueharms.llm.interface import STATUS_OK, Backend, Request, Sampling

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
    raw text, every other setting the template), `temperature` the benchmark's.
    """

    model_id: str
    condition: str
    adapter: str | None = None  # the adapter's name in the backend (None: the base)
    system: str | None = None
    categories: tuple[str, ...] | None = None
    chat_template: bool | None = None
    temperature: float | None = None


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
    stop_at_sentence: bool = False,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Answer every prompt `sampling.n` times for each member, in one stream of batches.

    Requests are interleaved prompt by prompt across members, so one batch serves several
    adapters (and equal prompts pad alike). Failures are kept as failed rows; rows come
    out member by member, in `members` order.
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
                if text is not None and stop_at_sentence:
                    text = first_sentence(text.lstrip("\n").split("\n")[0])
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
    stop_at_sentence: bool = False,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One subject's answers (generate_members with one member)."""
    return generate_members(
        prompts, backend, cache, [member], template, sampling, stop_at_sentence, batch_size
    )


@dataclass(frozen=True)
class GenerateJob:
    """One generation job: a group of subjects of one base model, on one benchmark.

    `members` are Member fields, with `adapter` the adapter's directory (None: the base
    model); `model` serves the group's base model; `bench` is config
    `benchmarks.<benchmark>`.
    """

    prompts_path: str
    members: Sequence[Mapping[str, Any]]
    bench: Mapping[str, Any]
    template: str
    seed: int
    model: BackendSetup
    batch_size: int
    out: str


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
        group.append(Member(**fields))
    server = job.model.make({n: d for d, n in names.items()} or None)
    df = generate_members(
        prompts,
        server,
        LLMCache(job.model.cache_dir),
        group,
        job.template,
        sampling_for(dict(job.bench), job.seed),
        stop_at_sentence=job.bench["stop_at_sentence"],
        batch_size=job.batch_size,
    )
    write_table(job.out, df, GENERATIONS_SCHEMA)


def run_job(job: Job) -> None:
    """The generate rule's job (scripts/generate.py): its members' system prompts are
    built here, an ICL profile from its distribution file, a mitigation run's prompt from
    the correlation stage's pairs."""
    from valueharms.data.steps import target_of
    from valueharms.data.vim import icl_system_prompt
    from valueharms.mitigation import mitigation_run_prompt

    p = job.params
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
        )
    )
