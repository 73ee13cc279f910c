"""Generation and judge jobs serve groups of subjects (valueharms.plan.group_items), and a
group's generation (valueharms.generate.generate_members) gives each member what a job of
its own would have given it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from valueharms import plan
from valueharms.data.benchmarks import PROMPTS_SCHEMA
from valueharms.generate import (
    GENERATIONS_SCHEMA,
    GenerateJob,
    Member,
    generate,
    generate_members,
    run,
)
from valueharms.io import read_table, split_rows, write_table
from valueharms.llm.backends import BackendSetup
from valueharms.llm.cache import LLMCache
from valueharms.llm.interface import Request, Sampling

Item = plan.GenItem


def items(n: int, family: str = "vim", bench: str = "rtp", base: str = "m") -> list[Item]:
    return [Item(bench, f"{base}/{family}/d{i}", "plain", family) for i in range(n)]


def test_groups_chunk_each_base_family_and_benchmark_in_plan_order() -> None:
    its = items(5) + items(2, "vanilla") + items(3, bench="hexphi")
    its.append(Item("rtp", "m/vim/d0", "plain", "vim"))  # a repeat counts once
    groups = plan.group_items(its, per_job=2)
    assert list(groups) == ["rtp", "hexphi"]
    assert list(groups["rtp"]) == ["m/vim-1", "m/vim-2", "m/vim-3", "m/vanilla-1"]
    assert [i.model_id for i in groups["rtp"]["m/vim-3"]] == ["m/vim/d4"]
    assert [len(v) for v in groups["hexphi"].values()] == [2, 1]
    index = plan.group_index(groups)
    assert index[("rtp", "m/vim/d2", "plain")] == "m/vim-2"
    assert index[("hexphi", "m/vim/d2", "plain")] == "m/vim-2"
    assert len(index) == 10


def test_one_subject_per_job_and_bases_apart() -> None:
    its = items(3) + items(2, base="other")
    groups = plan.group_items(its, per_job=1)["rtp"]
    assert list(groups) == ["m/vim-1", "m/vim-2", "m/vim-3", "other/vim-1", "other/vim-2"]
    with pytest.raises(ValueError):
        plan.group_items(its, per_job=0)


def test_appending_a_subject_changes_only_its_familys_last_group() -> None:
    before = plan.group_items(items(5) + items(1, "icl"), per_job=2)["rtp"]
    after = plan.group_items(items(6) + items(1, "icl"), per_job=2)["rtp"]
    changed = {g for g in after if after[g] != before.get(g)}
    assert changed == {"m/vim-3"}


def test_run_time_groups_round_trip() -> None:
    gid = plan.single_group("m/vim/close_Ach_2", "mit-dual-Achievement")
    assert plan.split_single_group(gid) == ("m/vim/close_Ach_2", "mit-dual-Achievement")
    assert plan.group_path("generations", "hexphi", "m/vim-1").endswith(
        "groups/generations/hexphi/m/vim-1.parquet"
    )


def prompts(n: int = 3, categories: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "benchmark": "hexphi",
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "category": [categories[i % len(categories)] for i in range(n)],
            "axis": None,
            "descriptor": None,
        }
    )


def test_members_share_batches_and_keep_their_own_settings(fake_backend_cls, tmp_path) -> None:
    backend = fake_backend_cls(answer=lambda r: f"{r.adapter}|{r.sampling.temperature}")
    members = [
        Member("m/vanilla", "plain"),
        Member("m/vim/A", "plain", adapter="adapter0"),
        Member("m/vim/A", "mit-safety", adapter="adapter0", system="Be safe.", categories=("b",)),
        Member("m/vanilla", "prompt-x", system="Value x.", chat_template=False, temperature=0.9),
    ]
    df = generate_members(
        prompts(), backend, LLMCache(tmp_path), members, "Q: {prompt}", Sampling(temperature=0.1),
        batch_size=4,
    )  # fmt: skip
    # Each member's rows, member by member; the mitigation run only on its category.
    keys = list(zip(df.model_id, df.condition, df.prompt_id, strict=True))
    assert keys == [
        ("m/vanilla", "plain", "p0"), ("m/vanilla", "plain", "p1"), ("m/vanilla", "plain", "p2"),
        ("m/vim/A", "plain", "p0"), ("m/vim/A", "plain", "p1"), ("m/vim/A", "plain", "p2"),
        ("m/vim/A", "mit-safety", "p1"),
        ("m/vanilla", "prompt-x", "p0"), ("m/vanilla", "prompt-x", "p1"),
        ("m/vanilla", "prompt-x", "p2"),
    ]  # fmt: skip
    assert df[df.condition == "prompt-x"].output.unique().tolist() == ["None|0.9"]
    assert df[df.condition == "mit-safety"].output.tolist() == ["adapter0|0.1"]
    # One stream of batches: the first batch already mixes the members (interleaved).
    first = backend.calls[0]
    assert len({(r.adapter, r.messages[0][1]) for r in first}) == 4
    sent = {r.key: r for c in backend.calls for r in c}
    assert sent["3|p0"].messages == (("system", "Value x."), ("user", "Q: question 0"))
    assert sent["3|p0"].chat_template is False and sent["0|p0"].chat_template is None
    assert len(sent) == 10  # unique keys across members


def test_a_group_answers_as_each_member_alone_would(fake_backend_cls, tmp_path) -> None:
    s = Sampling(temperature=0.0)
    alone = [
        generate(prompts(), fake_backend_cls(), LLMCache(tmp_path / str(i)),
                 Member(mid, c, adapter=a, system=sy), "{prompt}", s)
        for i, (mid, c, sy, a) in enumerate(
            [("m/vanilla", "plain", None, None), ("m/vim/A", "plain", None, "adapter0")]
        )
    ]  # fmt: skip
    group = generate_members(
        prompts(), fake_backend_cls(), LLMCache(tmp_path / "g"),
        [Member("m/vanilla", "plain"), Member("m/vim/A", "plain", adapter="adapter0")],
        "{prompt}", s,
    )  # fmt: skip
    # Same rows except the join key the fake echoes: in a group it carries the member.
    assert [o.split("|", 1)[1] for o in group.output] == [o for a in alone for o in a.output]
    assert group.output.iat[3].startswith("1|p0|")
    cols = [c for c in GENERATIONS_SCHEMA.names if c not in ("output",)]
    pd.testing.assert_frame_equal(group[cols], pd.concat(alone, ignore_index=True)[cols])


def test_group_job_writes_one_table_and_the_cuts_are_the_subjects(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The generate job on a real (tiny) model with an adapter, then the per-subject cuts."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # non-zero B: the adapter changes the answers
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(adapter)
    write_table(tmp_path / "p.parquet", prompts(4), PROMPTS_SCHEMA)
    blank = {"system": None, "categories": None, "chat_template": None, "temperature": None}
    members = [
        {"model_id": "tiny/vanilla", "condition": "plain", "adapter": None, **blank},
        {"model_id": "tiny/vim/A", "condition": "plain", "adapter": str(adapter), **blank},
        {**blank, "model_id": "tiny/vim/A", "condition": "mit-x", "adapter": str(adapter),
         "system": "Be careful.", "categories": ["a"]},
    ]  # fmt: skip
    bench = {"max_new_tokens": 6, "temperature": 0.0, "top_p": 1.0, "samples": 1,
             "stop": {}}  # fmt: skip
    out = tmp_path / "group.parquet"
    model = BackendSetup(
        "tiny",
        {"source": "path", "chat": True},
        "hf",
        {"hf": {"mixed_adapters": True}},
        str(tiny_model_dir),
        str(tmp_path / "cache"),
    )
    run(GenerateJob(str(tmp_path / "p.parquet"), members, bench, "{prompt}", 0, model, 8,
                    str(out)))  # fmt: skip
    table = read_table(out, GENERATIONS_SCHEMA)
    assert len(table) == 4 + 4 + 2 and (table.status == "ok").all()
    revs = table.groupby("model_id").model_revision.nunique()
    assert (revs == 1).all() and table.model_revision.nunique() == 2  # base vs adapter
    n = split_rows(out, GENERATIONS_SCHEMA, "tiny/vim/A", "plain", tmp_path / "cut.parquet")
    cut = read_table(tmp_path / "cut.parquet", GENERATIONS_SCHEMA)
    assert n == 4 and cut.prompt_id.tolist() == ["p0", "p1", "p2", "p3"]
    assert set(cut.condition) == {"plain"}
    vanilla = table[table.model_id == "tiny/vanilla"].output.tolist()
    assert cut.output.tolist() != vanilla  # the adapter was applied to its rows only


def test_chat_template_flag_overrides_the_models(tiny_model_dir: Path) -> None:
    from valueharms.llm.hf import HFBackend

    b = HFBackend("tiny", tiny_model_dir, chat=False)
    msgs = (("system", "Sys."), ("user", "Hi."))
    assert b.render(Request("k", messages=msgs)) == "Sys.\n\nHi."
    templated = b.render(Request("k", messages=msgs, chat_template=True))
    assert templated != "Sys.\n\nHi." and "Hi." in templated and "Sys." in templated
    b.chat = True
    assert b.render(Request("k", messages=msgs, chat_template=False)) == "Sys.\n\nHi."
    # Unset, the flag leaves cache keys as they were; set, it is part of the key.
    assert "chat_template" not in Request("k", messages=msgs).content()
    assert Request("k", messages=msgs, chat_template=False).content()["chat_template"] is False
