"""Training-side protocol switches, each behaviour on fixed inputs.

stage1_questions (vim.stage1_questions), stage2_labels (vim.stage2_labels), special_tokens
(tokenization.add_special_tokens) and benign_recipe (benign.train): the published
behaviour of Study A's public code and ours.
"""

from __future__ import annotations

import string
import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from paths import DEMO, PROMPTS, ROOT

from valueharms import VALUES
from valueharms.config import load_schema, validate
from valueharms.data import vim
from valueharms.job import Files, Job
from valueharms.llm.cache import cache_key
from valueharms.llm.interface import Request, Sampling
from valueharms.llm.local import LocalBackend, special_prefix

# --- fixed inputs --------------------------------------------------------------------

# The Ach extreme: Achievement 6, every other value 1.
ACH = {v: (6.0 if v == "Achievement" else 1.0) for v in VALUES}


def arguments(labels: list[list[str]], stances: list[str]) -> pd.DataFrame:
    """Touché arguments as read_touche returns them, labelled with `labels`."""
    n = len(labels)
    df = pd.DataFrame(
        {
            "arg_id": [str(i) for i in range(n)],
            "conclusion": [f"We should do thing {i}" for i in range(n)],
            "stance": stances,
            "premise": [f"reason {i}" for i in range(n)],
        }
    )
    for v in VALUES:
        df[v] = [int(v in labs) for labs in labels]
    return df


def project_templates() -> dict[str, str]:
    return vim.load_templates(vim.default_template_paths(PROMPTS))


# --- stage1_questions ----------------------------------------------------------------


def ach_stage1(questions: str) -> pd.DataFrame:
    # Under Ach an argument scores the minimum over its values: Achievement alone 6
    # (positive); Power, or Achievement with Security, 1 (negative).
    args = arguments(
        [["Achievement"], ["Power"], ["Achievement"], ["Achievement", "Security"]],
        ["in favor of", "against", "against", "in favor of"],
    )
    return vim.stage1_examples(args, ACH, project_templates(), questions=questions)


def test_stage1_per_polarity_asks_each_kind_its_own_question() -> None:
    t = project_templates()
    out = ach_stage1("per_polarity").set_index("arg_id")
    assert out["kind"].to_dict() == {
        "0": "positive",
        "1": "negative",
        "2": "positive",
        "3": "negative",
    }
    for arg_id, row in out.iterrows():
        key = f"stage1_prompt_{row['kind']}"
        assert row["prompt"] == t[key].format(conclusion=f"We should do thing {arg_id}")
    assert out.loc["0", "prompt"].endswith("that you would make.")
    assert out.loc["1", "prompt"].endswith("that you would never make.")
    # The answer restates the polarity, as the public code's target does.
    assert (
        out.loc["1", "completion"]
        == 'An argument I would never make: "I disagree with this, because reason 1"'
    )
    assert (
        out.loc["2", "completion"]
        == 'An argument I would make: "I disagree with this, because reason 2"'
    )


def test_stage1_shared_asks_every_example_one_question() -> None:
    t = project_templates()
    per, shared = ach_stage1("per_polarity"), ach_stage1("shared")
    conclusions = [f"We should do thing {i}" for i in shared["arg_id"]]
    assert shared["prompt"].tolist() == [
        t["stage1_prompt"].format(conclusion=c) for c in conclusions
    ]
    assert shared["prompt"].nunique() == 4 and per["prompt"].nunique() == 4
    # Only the question differs: same examples, same answers, same order.
    cols = ["split", "example_id", "kind", "completion"]
    pd.testing.assert_frame_equal(per[cols], shared[cols])


def test_stage1_per_polarity_needs_both_questions() -> None:
    t = project_templates()
    del t["stage1_prompt_negative"]
    args = arguments([["Achievement"]], ["in favor of"])
    with pytest.raises(ValueError, match="stage1_prompt_negative"):
        vim.stage1_examples(args, ACH, t)
    with pytest.raises(ValueError, match="unknown stage1_questions"):
        vim.stage1_examples(args, ACH, project_templates(), questions="both")  # type: ignore[arg-type]


def test_the_negative_question_is_read_like_every_vim_prompt(monkeypatch) -> None:
    from valueharms import plan

    monkeypatch.chdir(ROOT)
    cfg = validate({"distributions": {"select": ["Ach"]}})
    templates = plan.build(cfg).templates
    for key in ("stage1_prompt", "stage1_prompt_positive", "stage1_prompt_negative"):
        path = cfg["vim"]["prompts"][key]
        assert templates[f"vim.prompts.{key}"] == plan.read_template(path, key)
    assert "never make" in templates["vim.prompts.stage1_prompt_negative"]


# --- stage2_labels -------------------------------------------------------------------

# Two arguments: Achievement + Universalism; Power + Tradition.
S2_LABELS = [["Achievement", "Universalism"], ["Power", "Tradition"]]
# Integer scores, so the answers need no rounding draw: value i scores 1 + i % 6.
S2_TARGET = {v: float(1 + i % 6) for i, v in enumerate(VALUES)}
S2_TEMPLATES = {"stage2_prompt": "{statement}", "stage2_answer": "{value}={score}"}


def stage2(mode: str) -> pd.DataFrame:
    args = arguments(S2_LABELS, ["in favor of", "against"])
    args = vim.stage2_label_columns(args, mode)  # type: ignore[arg-type]
    return vim.stage2_examples(args, args.iloc[:0], S2_TARGET, S2_TEMPLATES)


def test_stage2_correct_labels_read_each_value_column() -> None:
    out = stage2("correct")
    assert out[["arg_id", "value"]].values.tolist() == [
        ["0", "Achievement"],
        ["0", "Universalism"],
        ["1", "Power"],
        ["1", "Tradition"],
    ]
    assert out["completion"].tolist() == [
        "achievement=1",
        "universalism=4",
        "power=5",
        "tradition=3",
    ]


def test_stage2_published_shift_gives_each_value_its_left_neighbours_label() -> None:
    out = stage2("published_shift")
    # Achievement's label goes to Benevolence, Universalism's column is never read, Power's
    # goes to Security and Tradition's to Universalism; each answer uses its value's score.
    assert out[["arg_id", "value"]].values.tolist() == [
        ["0", "Benevolence"],
        ["1", "Security"],
        ["1", "Universalism"],
    ]
    assert out["completion"].tolist() == ["benevolence=2", "security=6", "universalism=4"]
    assert out.loc[0, "prompt"] == "I agree with We should do thing 0. reason 0"


def public_code_values(df: pd.DataFrame) -> list[list[str]]:
    """Study A's src/dataset/d_survey.py (DS_survey.__init__, lines 29 and 39-46), on a
    frame in the value_split file layout."""
    value_name = [
        "achievement", "benevolence", "conformity", "hedonism", "power",
        "security", "self-direction", "stimulation", "tradition", "universalism",
    ]  # fmt: skip
    annotated_value = []
    for i in range(len(df)):
        row = df.iloc[i].iloc[-11:-1]  # the public code's df.iloc[i][-11:-1]
        annotated_value.append([v for r, v in zip(list(row), value_name, strict=True) if r == 1])
    return annotated_value


def test_stage2_published_shift_matches_the_public_code(tmp_path: Path) -> None:
    # The value_split layout (Unnamed: 0, Conclusion, Stance, Premise, ten values), read
    # through ToucheFiles as the vim_examples job does.
    args = arguments(S2_LABELS, ["in favor of", "against"])
    raw = pd.DataFrame({"Unnamed: 0": args["arg_id"], "Conclusion": args["conclusion"]})
    raw["Stance"], raw["Premise"] = args["stance"], args["premise"]
    for v in VALUES:
        raw[v] = args[v]
    raw.to_csv(tmp_path / "train.csv", sep="\t", index=False)
    raw.iloc[:0].to_csv(tmp_path / "valid.csv", sep="\t", index=False)
    files = [
        str(DEMO / "valueEval_10.csv"),
        str(tmp_path / "train.csv"),
        str(tmp_path / "valid.csv"),
    ]
    for mode in ("correct", "published_shift"):
        _, train, valid = vim.ToucheFiles(*files, stage2_labels=mode).read()  # type: ignore[arg-type]
        out = vim.stage2_examples(train, valid, S2_TARGET, S2_TEMPLATES)
        got = [out.loc[out["arg_id"] == a, "value"].str.lower().tolist() for a in ("0", "1")]
        want = (
            public_code_values(raw)
            if mode == "published_shift"
            else [[v.lower() for v in labs] for labs in S2_LABELS]
        )
        assert got == want
        # The split-size table counts what the examples hold, under either mode.
        row = vim.split_sizes_row("x", vim.read_touche(files[0]), train, valid, ACH)
        assert row["s2_train"] == len(out)


def test_vim_examples_job_threads_both_switches(tmp_path: Path) -> None:
    from valueharms.data import distributions, steps
    from valueharms.io import read_table, write_table

    dist = tmp_path / "Ach.parquet"
    row = {"name": "Ach", "kind": "extreme", "anchor": "Ach", "rank": 0, "distance": 0.0}
    frame = pd.DataFrame([{**row, "respondent_id": None, **ACH}])
    write_table(dist, frame, distributions.DISTRIBUTIONS_SCHEMA)
    templates = project_templates()

    def run(questions: str, labels: str) -> pd.DataFrame:
        out = tmp_path / f"{questions}-{labels}.parquet"
        params = {"templates": templates, "threshold": 3, "strategy": "min", "seed": 42}
        params |= {"stage1_questions": questions, "stage2_labels": labels}
        touche = {"touche": str(DEMO / "valueEval_10.csv")}
        touche |= {"stage2_train": str(DEMO / "value_split_train.csv")}
        touche |= {"stage2_valid": str(DEMO / "value_split_valid.csv")}
        job = Job(Files.of(distribution=str(dist), **touche), Files.of(str(out)), params)
        steps.vim_examples_job(job)
        return read_table(out, vim.VIM_SCHEMA)

    ours, published = run("shared", "correct"), run("per_polarity", "published_shift")
    s1 = published[published["stage"] == 1]
    negative = s1.loc[s1["kind"] == "negative", "prompt"]
    assert negative.str.endswith("that you would never make.").all() and len(negative) > 0
    assert ours.loc[ours["stage"] == 1, "prompt"].str.contains("or one that you would").all()
    assert "Universalism" in set(ours["value"]) and "Achievement" in set(ours["value"])
    assert "Achievement" not in set(published["value"].dropna())


# --- special_tokens ------------------------------------------------------------------

LLAMA_CHAT = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def llama_tokenizer(add_bos: bool = True) -> Any:
    """A Llama tokenizer (BOS <s> by default, as Llama-2's) over single characters."""
    from transformers import LlamaTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in "\u2581" + string.ascii_letters + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
    tok = LlamaTokenizerFast(vocab=vocab, merges=[], add_bos_token=add_bos, add_eos_token=False)
    tok.chat_template = LLAMA_CHAT
    return tok


@pytest.fixture(scope="module")
def tok() -> Any:
    return llama_tokenizer()


def test_special_prefix_is_what_the_tokenizer_defaults_add(tok) -> None:
    assert special_prefix(tok) == [tok.bos_token_id] == [1]
    assert special_prefix(llama_tokenizer(add_bos=False)) == []


def sft_rows(tok, add_special_tokens: bool, chat: bool) -> list[tuple[list[int], list[int]]]:
    from valueharms.train.sft import SFTConfig, _encode_examples

    df = pd.DataFrame({"prompt": ["Debate topic: x. Tell me."], "completion": ["I agree."]})
    cfg = SFTConfig(max_length=256, add_special_tokens=add_special_tokens)
    return _encode_examples(tok, df, df, cfg, chat).train


def test_trainer_sees_bos_first_only_when_switched_on(tok) -> None:
    from valueharms.train.sft import IGNORE

    bos = tok.bos_token_id
    ((ids_on, labels_on),) = sft_rows(tok, True, chat=False)
    ((ids_off, labels_off),) = sft_rows(tok, False, chat=False)
    assert ids_on[0] == bos and ids_on[1:] == ids_off and bos not in ids_off
    assert ids_on.count(bos) == 1  # never before the completion
    assert labels_on[0] == IGNORE and labels_on[1:] == labels_off
    assert ids_on[-1] == tok.eos_token_id
    # A chat template writes its own BOS: one, whatever the switch.
    ((chat_on, _),) = sft_rows(tok, True, chat=True)
    ((chat_off, _),) = sft_rows(tok, False, chat=True)
    assert chat_on == chat_off and chat_on[0] == bos and chat_on.count(bos) == 1


def test_train_jobs_pass_the_tokenization_param() -> None:
    from valueharms.train import steps

    train = validate({})["vim"]["stage1"]
    for on in (True, False):
        job = Job(params={"train": train, "tokenization": {"add_special_tokens": on}})
        assert steps.sft_config(steps._train_cfg(job)).add_special_tokens is on
    assert steps.sft_config(steps._train_cfg(Job(params={"train": train}))).add_special_tokens


class StubBackend(LocalBackend):
    """A local backend without a model: identity, rendering and token ids only."""

    kind = "stub"

    def __init__(self, tokenizer: Any, chat: bool, add_special_tokens: bool) -> None:
        self.model_id, self.chat, self.tokenizer = "m", chat, tokenizer
        self._revision, self._adapter_revisions = "rev", {}
        self.use_special_tokens(add_special_tokens)


RAW = Request("raw", prompt="Hello there")
CHAT = Request("chat", messages=(("user", "Hello there"),))
PLAIN = Request("plain", messages=(("user", "Hello there"),), chat_template=False)


def test_prompt_ids_start_with_bos_for_raw_prompts_only(tok) -> None:
    bos = tok.bos_token_id
    on, off = StubBackend(tok, False, True), StubBackend(tok, False, False)
    bare = tok("Hello there", add_special_tokens=False)["input_ids"]
    assert on.prompt_ids(RAW) == [bos, *bare] and off.prompt_ids(RAW) == bare
    assert on.prompt_ids(PLAIN) == [bos, *bare]  # plain prose, no template: raw text
    chat_on, chat_off = StubBackend(tok, True, True), StubBackend(tok, True, False)
    assert chat_on.prompt_ids(CHAT) == chat_off.prompt_ids(CHAT)
    assert chat_on.prompt_ids(CHAT)[0] == bos and chat_on.prompt_ids(CHAT).count(bos) == 1


def test_cache_key_follows_the_prefix_the_model_sees(tok) -> None:
    on, off = StubBackend(tok, False, True), StubBackend(tok, False, False)
    assert on.identity(None)["special_prefix"] == [tok.bos_token_id]
    assert off.identity(None) == {"backend": "stub", "model": "m", "revision": "rev"}
    assert cache_key(on.identity(None), RAW) != cache_key(off.identity(None), RAW)
    # A tokenizer whose defaults add nothing: the switch changes no token, nor the key.
    no_bos = llama_tokenizer(add_bos=False)
    a, b = StubBackend(no_bos, False, True), StubBackend(no_bos, False, False)
    assert cache_key(a.identity(None), RAW) == cache_key(b.identity(None), RAW)


class _Params:
    def __init__(self, **kw: Any) -> None:
        self.logprob_token_ids = None
        self.__dict__.update(kw)


class _FakeLLM:
    """Records the token ids vLLM would get; every scored token has log-probability -1."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []

    def generate(self, prompts, params, lora_request=None, use_tqdm=False):
        self.prompts += [p["prompt_token_ids"] for p in prompts]
        out = []
        for p in params:
            lp = {t: types.SimpleNamespace(logprob=-1.0) for t in p.logprob_token_ids or []}
            out.append(
                types.SimpleNamespace(outputs=[types.SimpleNamespace(text="ok", logprobs=[lp])])
            )
        return out


def test_vllm_backend_sends_the_same_prefixed_ids(tok, monkeypatch) -> None:
    from valueharms.llm.vllm_backend import VLLMBackend

    fake = types.ModuleType("vllm")
    fake.SamplingParams = _Params  # type: ignore[attr-defined]
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    bos = tok.bos_token_id
    for on in (True, False):
        b = VLLMBackend.__new__(VLLMBackend)
        b.model_id, b.chat, b.tokenizer, b.max_model_len = "m", False, tok, 512
        b._revision, b._adapter_revisions, b._lora, b.llm = "rev", {}, {}, _FakeLLM()
        b.use_special_tokens(on)
        choose = Request("c", prompt="Pick", sampling=Sampling(choices=("a", "b")))
        assert [r.status for r in b.generate([RAW, choose])] == ["ok", "ok"]
        raw_ids, *steps = b.llm.prompts
        assert raw_ids == StubBackend(tok, False, on).prompt_ids(RAW)
        assert (raw_ids[0] == bos) is on and raw_ids.count(bos) == int(on)
        # Choice scoring (one step per choice-token prefix): the special prefix before the
        # prompt, none before or inside a choice's ids.
        p_ids = StubBackend(tok, False, on).prompt_ids(choose)
        assert len(steps) == 2 and all(ids[: len(p_ids)] == p_ids for ids in steps)
        assert all(ids.count(bos) == int(on) for ids in steps)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tok) -> Path:
    """A tiny random Llama saved with the Llama tokenizer, as a prepared base model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from valueharms.hashing import sha256_dir
    from valueharms.io import write_json
    from valueharms.models import REVISION_FILE

    out = tmp_path_factory.mktemp("llama_bos")
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    write_json(out / REVISION_FILE, {"source": "test", "weights_sha256": sha256_dir(out)})
    return out


@pytest.mark.slow
def test_hf_backend_sees_bos_first_only_when_switched_on(llama_dir, tok) -> None:
    from valueharms.llm.backends import make_backend

    bos = tok.bos_token_id
    settings = validate({})["backends"]
    choose = Request("c", prompt="Pick", sampling=Sampling(choices=("a", "bc")))
    short = Request("s", prompt="Hi", sampling=Sampling(max_new_tokens=2))
    long = Request("l", prompt="Hello there", sampling=Sampling(max_new_tokens=2))
    seen: dict[bool, list[list[int]]] = {}
    calls: list[Any] = []  # (input_ids, attention_mask) of every forward call
    for on in (True, False):
        tokenization = {"add_special_tokens": on}
        spec = {"source": "path", "chat": False}
        b = make_backend("m", spec, "hf", {**settings, "tokenization": tokenization}, llama_dir)
        calls.clear()
        b.model.register_forward_pre_hook(
            lambda _m, _a, kw: calls.append((kw["input_ids"], kw.get("attention_mask"))),
            with_kwargs=True,
        )
        b.generate([choose])
        (p_ids, p_mask), (tail, _) = calls[:2]
        # The prompt pass: BOS first (after left padding) when on; the choices' pass: none.
        seen[on] = [p_ids[0][p_mask[0].bool()].tolist(), tail.tolist()]
        assert all(bos not in row for row in tail.tolist())
        calls.clear()
        b.generate([short, long])
        first_ids, first_mask = calls[0]
        rows = [ids[m.bool()].tolist() for ids, m in zip(first_ids, first_mask, strict=True)]
        assert rows == [StubBackend(tok, False, on).prompt_ids(r) for r in (short, long)]
    assert seen[True][0] == [bos, *seen[False][0]] and bos not in seen[False][0]
    assert seen[True][1] == seen[False][1]


# --- benign_recipe -------------------------------------------------------------------


def test_benign_defaults_are_the_published_recipe() -> None:
    cfg = validate({"benign": {"select": ["alpaca"]}})
    train = cfg["benign"]["train"]
    assert {k: train[k] for k in ("epochs", "batch_size", "micro_batch_size", "max_length")} == {
        "epochs": 1,
        "batch_size": 16,
        "micro_batch_size": 1,
        "max_length": 2048,
    }
    assert (train["learning_rate"], train["lora_r"], train["lora_alpha"]) == (2e-5, 8, 32)
    assert train["target_modules"] == ["q_proj", "v_proj"] and train["lora_dropout"] == 0.1
    assert (train["weight_decay"], train["max_grad_norm"], train["group_by_length"]) == (
        0.0,
        1.0,
        False,
    )
    # VIM keeps its own (Study A's VIM loop): 5 epochs of batch 8 at 128 tokens.
    s1 = cfg["vim"]["stage1"]
    assert (s1["epochs"], s1["batch_size"], s1["max_length"]) == (5, 8, 128)
    assert (s1["weight_decay"], s1["max_grad_norm"], s1["micro_batch_size"]) == (0.01, None, None)
    # A partial override keeps the rest of the recipe.
    two = validate({"benign": {"train": {"epochs": 2}}})["benign"]["train"]
    assert (two["epochs"], two["batch_size"], two["max_length"]) == (2, 16, 2048)


def test_every_switch_carries_its_protocol_marker() -> None:
    props = load_schema()["properties"]
    assert props["vim"]["properties"]["stage1_questions"]["x-protocol"] == "stage1_questions"
    assert props["vim"]["properties"]["stage2_labels"]["x-protocol"] == "stage2_labels"
    tokenization = props["tokenization"]["properties"]["add_special_tokens"]
    assert tokenization["x-protocol"] == "special_tokens"
    assert props["benign"]["properties"]["train"]["x-protocol"] == "benign_recipe"
    cfg = validate({"tokenization": {"add_special_tokens": False}})
    assert cfg["tokenization"] == {"add_special_tokens": False}


def tiny_lora(seed: int = 0) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=32,
    )
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(LlamaForCausalLM(cfg), lora)
    for name, p in model.named_parameters():  # LoRA B starts at 0: give it a gradient path
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


# A fixed batch of 4 examples with 1, 5, 2 and 9 target tokens: the weightings differ.
BATCH = [
    ([3, 4, 5, 6], [-100, -100, -100, 6]),
    ([3, 7, 8, 9, 10, 11, 12], [-100, -100, 8, 9, 10, 11, 12]),
    ([5, 5, 13, 14], [-100, -100, 13, 14]),
    ([9] + list(range(15, 25)), [-100, -100] + list(range(16, 25))),
]


def grads(model: Any) -> dict[str, Any]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def ours(model: Any) -> dict[str, Any]:
    """Our trainer's gradient for one update on BATCH (batch 4 in micro-batches of 1)."""
    from valueharms.train.sft import SFTConfig, _Encoded, _LoraRun

    cfg = SFTConfig(batch_size=4, micro_batch_size=1, weight_decay=0.0, group_by_length=False)
    run = _LoraRun(model, _Encoded(BATCH, [], 0, 0), cfg, "cpu", False, pad_id=0)
    seen: dict[str, Any] = {}
    run.opt.register_step_pre_hook(lambda *_: seen.update(grads(model)))
    model.train()
    run.train_step([0, 1, 2, 3])
    return seen


def trainer(model: Any, tmp_path: Path) -> dict[str, Any]:
    """transformers' Trainer as Study A's benign script runs it: batch 1, 4 accumulation
    steps (16 there), one update, clipping off to compare raw gradients."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    seen: dict[str, Any] = {}

    class Grab(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            seen.update(grads(model))

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        return {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}

    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        num_train_epochs=1,
        learning_rate=2e-5,
        max_grad_norm=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    data = [{"input_ids": i, "labels": lab} for i, lab in BATCH]
    run = Trainer(model, args, train_dataset=data, data_collator=collate, callbacks=[Grab()])
    run.train()
    return seen


def per_example_mean(model: Any) -> dict[str, Any]:
    """The other weighting: each example's token mean, averaged over examples (Trainer
    before transformers 4.46)."""
    import torch

    model.zero_grad()
    losses = [
        model(input_ids=torch.tensor([i]), labels=torch.tensor([lab])).loss for i, lab in BATCH
    ]
    (sum(losses) / len(losses)).backward()
    return grads(model)


@pytest.mark.slow
def test_batch_loss_weighting_matches_transformers_trainer(tmp_path: Path) -> None:
    import torch

    a, b, c = ours(tiny_lora()), trainer(tiny_lora(), tmp_path), per_example_mean(tiny_lora())
    assert set(a) == set(b) == set(c) and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7)
    assert any(not torch.allclose(a[n], c[n], rtol=1e-2, atol=1e-6) for n in a)
