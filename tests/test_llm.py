"""LLM call layer: the answer cache, the transformers backend and the generation stage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from valueharms.generate import GENERATIONS_SCHEMA, Member, build_requests, generate, sampling_for
from valueharms.llm.cache import LLMCache, cache_key, cached_generate
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling
from valueharms.models import model_revision

# --- cache ------------------------------------------------------------------------------


def reqs(n: int, sampling: Sampling | None = None) -> list[Request]:
    s = sampling or Sampling(max_new_tokens=8)
    return [Request(f"k{i}", messages=(("user", f"question {i}"),), sampling=s) for i in range(n)]


def n_entries(root: Path) -> int:
    return len(list(root.rglob("*.json")))


def test_second_run_is_answered_from_the_cache(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    backend = fake_backend_cls()
    first = cached_generate(backend, reqs(5), cache, batch_size=2)
    assert [len(c) for c in backend.calls] == [2, 2, 1]
    assert [r.texts for r in first] == [[f"k{i}|question {i}"] for i in range(5)]
    assert [r.cached for r in first] == [False] * 5
    assert n_entries(tmp_path) == 5

    again = fake_backend_cls()
    second = cached_generate(again, reqs(5), LLMCache(tmp_path), batch_size=2)
    assert again.n_calls == 0
    assert [r.texts for r in second] == [r.texts for r in first]
    assert [r.cached for r in second] == [True] * 5
    assert [r.key for r in second] == [f"k{i}" for i in range(5)]
    assert (cache.hits, cache.misses) == (0, 5)


def test_cache_entry_is_one_json_file_named_by_its_key(tmp_path: Path, fake_backend_cls) -> None:
    backend = fake_backend_cls()
    req = reqs(1)[0]
    cached_generate(backend, [req], LLMCache(tmp_path))
    key = cache_key(backend.identity(None), req)
    entry = json.loads((tmp_path / key[:2] / f"{key}.json").read_text(encoding="utf-8"))
    assert entry == {"texts": ["k0|question 0"], "identity": backend.identity(None)}


def test_the_caller_key_is_not_part_of_the_cache_key(tmp_path: Path, fake_backend_cls) -> None:
    identity = {"backend": "fake", "revision": "r"}
    a, b = reqs(1)[0], replace(reqs(1)[0], key="another-join-key")
    assert cache_key(identity, a) == cache_key(identity, b)
    cache = LLMCache(tmp_path)
    cached_generate(fake_backend_cls(), [a], cache)
    backend = fake_backend_cls()
    (resp,) = cached_generate(backend, [b], cache)
    assert backend.n_calls == 0
    assert (resp.key, resp.texts, resp.cached) == ("another-join-key", ["k0|question 0"], True)


BASE = Request("q", messages=(("system", "be brief"), ("user", "hi")), sampling=Sampling())


@pytest.mark.parametrize(
    ("revision", "request_"),
    [
        ("rev-2", BASE),
        ("rev-1", replace(BASE, messages=(("system", "be brief"), ("user", "hi!")))),
        ("rev-1", replace(BASE, messages=(("user", "hi"),))),
        ("rev-1", replace(BASE, messages=(("system", "be brief"), ("assistant", "hi")))),
        ("rev-1", replace(BASE, messages=(), prompt="hi")),
        ("rev-1", replace(BASE, sampling=Sampling(max_new_tokens=65))),
        ("rev-1", replace(BASE, sampling=Sampling(temperature=0.5))),
        ("rev-1", replace(BASE, sampling=Sampling(top_p=0.9))),
        ("rev-1", replace(BASE, sampling=Sampling(n=2))),
        ("rev-1", replace(BASE, sampling=Sampling(seed=1))),
        ("rev-1", replace(BASE, adapter="a")),
    ],
    ids=[
        "revision",
        "message",
        "messages",
        "role",
        "prompt",
        "max_new_tokens",
        "temperature",
        "top_p",
        "n",
        "seed",
        "adapter",
    ],
)
def test_anything_that_decides_the_answer_is_a_cache_miss(
    tmp_path: Path, fake_backend_cls, revision: str, request_: Request
) -> None:
    cache = LLMCache(tmp_path)
    cached_generate(fake_backend_cls(revision="rev-1"), [BASE], cache)
    same = fake_backend_cls(revision="rev-1")
    assert cached_generate(same, [BASE], cache)[0].cached is True
    assert same.n_calls == 0
    changed = fake_backend_cls(revision=revision)
    (resp,) = cached_generate(changed, [request_], cache)
    assert changed.requested_keys() == ["q"]
    assert resp.cached is False
    assert n_entries(tmp_path) == 2


def test_failed_answers_are_not_cached(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    flaky = fake_backend_cls(fail={"k1"})
    first = cached_generate(flaky, reqs(3), cache)
    assert [r.status for r in first] == [STATUS_OK, STATUS_FAILED, STATUS_OK]
    assert first[1].texts == [] and first[1].error == "RuntimeError: told to fail"
    assert n_entries(tmp_path) == 2
    healthy = fake_backend_cls()
    second = cached_generate(healthy, reqs(3), cache)
    assert healthy.requested_keys() == ["k1"]
    assert [r.status for r in second] == [STATUS_OK] * 3
    assert [r.cached for r in second] == [True, False, True]
    assert second[1].texts == ["k1|question 1"]


def test_a_crash_keeps_the_batches_already_answered(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    crashing = fake_backend_cls(raise_on_call=3)
    with pytest.raises(RuntimeError, match="crashed on call 3"):
        cached_generate(crashing, reqs(7), cache, batch_size=2)
    assert n_entries(tmp_path) == 4
    rerun = fake_backend_cls()
    out = cached_generate(rerun, reqs(7), cache, batch_size=2)
    assert rerun.requested_keys() == ["k4", "k5", "k6"]
    assert [len(c) for c in rerun.calls] == [2, 1]
    assert [r.cached for r in out] == [True] * 4 + [False] * 3
    assert [r.texts[0] for r in out] == [f"k{i}|question {i}" for i in range(7)]


def test_an_unreadable_entry_is_a_miss(tmp_path: Path, fake_backend_cls) -> None:
    backend = fake_backend_cls()
    req = reqs(1)[0]
    key = cache_key(backend.identity(None), req)
    path = tmp_path / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"texts": ["trunc', encoding="utf-8")
    (resp,) = cached_generate(backend, [req], LLMCache(tmp_path))
    assert backend.n_calls == 1 and resp.texts == ["k0|question 0"]
    assert json.loads(path.read_text(encoding="utf-8"))["texts"] == ["k0|question 0"]


def test_progress_counts_every_request_once(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    cached_generate(fake_backend_cls(), reqs(3), cache)
    seen: list[int] = []
    cached_generate(fake_backend_cls(), reqs(8), cache, batch_size=2, progress=seen.append)
    assert seen == [3, 2, 2, 1]


# --- generation stage -------------------------------------------------------------------


def prompts_df(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "benchmark": ["rtp"] * n,
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"Prompt {i}" for i in range(n)],
            "category": ["c"] * n,
            "axis": [None] * n,
            "descriptor": [None] * n,
        }
    )


def test_build_requests_puts_the_system_text_first() -> None:
    s = Sampling(max_new_tokens=5, temperature=0.7, top_p=0.9, n=2, seed=3)
    out = build_requests(
        prompts_df(2), "Continue: {prompt}", s, system="You value power.", adapter="x"
    )
    assert out == [
        Request(
            "p0", (("system", "You value power."), ("user", "Continue: Prompt 0")), None, s, "x"
        ),
        Request(
            "p1", (("system", "You value power."), ("user", "Continue: Prompt 1")), None, s, "x"
        ),
    ]
    plain = build_requests(prompts_df(1), "{prompt}", s)
    assert plain[0].messages == (("user", "Prompt 0"),) and plain[0].adapter is None


def test_sampling_for_reads_the_benchmark_config() -> None:
    bench = {"max_new_tokens": 24, "temperature": 0.1, "top_p": 0.75, "samples": 10}
    assert sampling_for(bench, seed=4) == Sampling(24, 0.1, 0.75, 10, 4)


def test_generate_rows_samples_failures_and_first_sentence(
    tmp_path: Path, fake_backend_cls
) -> None:
    backend = fake_backend_cls(
        revision="rev-9",
        canned={"p0": "\n first one. second one.\nthird", "p2": "no stop here  "},
        fail={"p1"},
    )
    s = Sampling(max_new_tokens=8, temperature=0.5, n=2)
    df = generate(
        prompts_df(3),
        backend,
        LLMCache(tmp_path),
        Member("m/vim/Ach", "plain", adapter="subject", stop="sentence"),
        "{prompt}",
        s,
    )
    assert list(df.columns) == GENERATIONS_SCHEMA.names
    assert df["prompt_id"].tolist() == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert df["sample"].tolist() == [0, 1, 0, 1, 0, 1]
    out = df["output"].tolist()
    assert out[:2] == [" first one."] * 2 and out[4:] == ["no stop here"] * 2
    assert df["output"].isna().tolist() == [False, False, True, True, False, False]
    assert df["status"].tolist() == ["ok", "ok", "failed", "failed", "ok", "ok"]
    assert df["error"].tolist()[2:4] == ["RuntimeError: told to fail"] * 2
    assert set(df["model_revision"]) == {"rev-9"}
    assert set(df["model_id"]) == {"m/vim/Ach"} and set(df["condition"]) == {"plain"}
    assert backend.calls[0][0].adapter == "subject"
    again = generate(
        prompts_df(3),
        fake_backend_cls(revision="rev-9"),
        LLMCache(tmp_path),
        Member("m/vim/Ach", "plain", adapter="subject"),
        "{prompt}",
        s,
    )
    assert again["cached"].tolist() == [True, True, False, False, True, True]
    assert again["output"].tolist()[0] == "\n first one. second one.\nthird"  # no cut


# --- transformers backend on the tiny model --------------------------------------------

PROMPTS = [
    "Hello there",
    "The cat sat on the mat because it was",
    "Why?",
    "A long long prompt about nothing in particular, really, with many words in it.",
]


@pytest.fixture(scope="module")
def hf_base(tiny_model_dir):
    from valueharms.llm.hf import HFBackend

    return HFBackend("tiny", tiny_model_dir, chat=True, threads=2)


def user(key: str, text: str, s: Sampling, adapter: str | None = None) -> Request:
    return Request(key, messages=(("user", text),), sampling=s, adapter=adapter)


def test_render_chat_and_completion(hf_base) -> None:
    req = Request("k", messages=(("system", "S"), ("user", "U")))
    assert hf_base.render(req) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    assert hf_base.render(Request("k", prompt="raw text")) == "raw text"
    hf_base.chat = False
    try:
        assert hf_base.render(req) == "S\n\nU"
    finally:
        hf_base.chat = True


def test_greedy_is_deterministic_and_batch_invariant(hf_base) -> None:
    s = Sampling(max_new_tokens=6)
    alone = [hf_base.generate([user("k", p, s)])[0].texts for p in PROMPTS]
    batch = hf_base.generate([user(f"k{i}", p, s) for i, p in enumerate(PROMPTS)])
    assert hf_base.generate([user("k", PROMPTS[3], s)])[0].texts == alone[3]
    assert [r.texts for r in batch] == alone
    assert [r.key for r in batch] == ["k0", "k1", "k2", "k3"]
    assert all(len(t) == 1 and t[0] for t in alone)
    assert len({t[0] for t in alone}) >= 3  # the prompts really lead to different answers
    tokens = hf_base.tokenizer(alone[0][0], add_special_tokens=False)["input_ids"]
    assert len(tokens) <= 6


def test_sampling_returns_n_seeded_texts(hf_base) -> None:
    s = Sampling(max_new_tokens=4, temperature=1.0, top_p=1.0, n=3, seed=1)
    (first,) = hf_base.generate([user("k", "Hello", s)])
    (second,) = hf_base.generate([user("k", "Hello", s)])
    (other,) = hf_base.generate([user("k", "Hello", replace(s, seed=2))])
    assert first.status == STATUS_OK and len(first.texts) == 3
    assert len(set(first.texts)) == 3
    assert second.texts == first.texts
    assert other.texts != first.texts


def test_mixed_samplings_in_one_call_keep_request_order(hf_base) -> None:
    greedy, sampled = Sampling(max_new_tokens=4), Sampling(max_new_tokens=4, temperature=1.0, n=2)
    out = hf_base.generate(
        [user("a", "Hi", sampled), user("b", "Hi", greedy), user("c", "Yo", sampled)]
    )
    assert [r.key for r in out] == ["a", "b", "c"]
    assert [len(r.texts) for r in out] == [2, 1, 2]
    assert out[1].texts == hf_base.generate([user("x", "Hi", greedy)])[0].texts


def test_greedy_with_several_samples_returns_copies(hf_base) -> None:
    (resp,) = hf_base.generate([user("k", "Hello", Sampling(max_new_tokens=4, n=3))])
    assert resp.status == STATUS_OK
    assert len(resp.texts) == 3 and len(set(resp.texts)) == 1


TRAIN_PROMPTS = [
    "Hello there",
    "What is two plus two?",
    "Name a colour.",
    "Is the sky blue?",
    "Tell me a story.",
    "Why?",
    "Describe a cat.",
    "Where is Paris?",
]
HELD_OUT = [
    "Good morning",
    "Count to three.",
    "What is your name?",
    "Say something.",
    "Hi",
    "Explain gravity.",
]


@pytest.fixture(scope="module")
def banana_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """An adapter trained to answer ' Banana' to anything."""
    from valueharms.train.sft import SFTConfig, train_lora

    train = pd.DataFrame({"prompt": TRAIN_PROMPTS, "completion": [" Banana"] * 8})
    out = tmp_path_factory.mktemp("adapters") / "banana"
    cfg = SFTConfig(
        learning_rate=5e-2,
        epochs=4,
        batch_size=8,
        lora_dropout=0.0,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    train_lora(tiny_model_dir, train, train.head(2), out, cfg, threads=2)
    return out


def test_identity_names_base_and_adapter_revisions(tiny_model_dir, banana_adapter) -> None:
    from valueharms.llm.hf import HFBackend

    backend = HFBackend("tiny", tiny_model_dir, adapters={"a": banana_adapter})
    base_rev = json.loads((tiny_model_dir / "revision.json").read_text())["weights_sha256"]
    assert backend.identity(None) == {"backend": "hf", "model": "tiny", "revision": base_rev}
    assert backend.identity("a")["revision"] == model_revision(tiny_model_dir, banana_adapter)
    assert backend.identity("a")["revision"].startswith(base_rev[:16] + "+")
    assert backend.identity("a")["revision"] != base_rev
    with pytest.raises(KeyError):
        backend.identity("unknown")


def test_requests_are_routed_to_their_adapter(tiny_model_dir, banana_adapter, hf_base) -> None:
    from valueharms.llm.hf import HFBackend

    backend = HFBackend("tiny", tiny_model_dir, adapters={"a": banana_adapter})
    s = Sampling(max_new_tokens=3)
    mixed = []
    for i, p in enumerate(HELD_OUT):  # interleave base and adapter requests in one call
        mixed += [user(f"base{i}", p, s), user(f"ad{i}", p, s, adapter="a")]
    out = {r.key: r.texts[0] for r in backend.generate(mixed)}
    plain = [
        r.texts[0] for r in hf_base.generate([user(str(i), p, s) for i, p in enumerate(HELD_OUT)])
    ]
    # Base requests see the base model, untouched by the loaded adapter.
    assert [out[f"base{i}"] for i in range(len(HELD_OUT))] == plain
    adapted = [out[f"ad{i}"] for i in range(len(HELD_OUT))]
    assert sum(t.startswith(" Ban") for t in adapted) >= 4
    assert sum(t.startswith(" Ban") for t in plain) == 0


def test_choices_pick_the_likeliest_continuation(hf_base) -> None:
    """The padded, batched choice scores agree with scoring each sequence on its own."""
    import torch

    choices = ("yes", "no", "maybe later")
    s = Sampling(choices=choices)
    reqs = [user(f"k{i}", p, s) for i, p in enumerate(PROMPTS)]
    got = [r.texts for r in hf_base.generate(reqs)]
    tok, model = hf_base.tokenizer, hf_base.model
    expected = []
    for p in PROMPTS:
        prompt_ids = tok(hf_base.render(user("k", p, s)), add_special_tokens=False)["input_ids"]
        best, best_lp = None, -float("inf")
        for c in choices:
            c_ids = tok(c, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + c_ids])
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
            lp = sum(float(logp[len(prompt_ids) + k - 1, t]) for k, t in enumerate(c_ids))
            if lp > best_lp:
                best, best_lp = c, lp
        expected.append([best])
    assert got == expected
    assert all(t[0] in choices for t in got)


@pytest.fixture(scope="module")
def noise_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A LoRA adapter with random non-zero weights: it changes every answer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, replace_init(cfg))
    out = tmp_path_factory.mktemp("adapters") / "noise"
    peft_model.save_pretrained(out)
    return out


def replace_init(cfg):
    cfg.init_lora_weights = False  # random A and B, so the adapter is not a no-op
    return cfg


def mixed_requests(s: Sampling) -> list[Request]:
    out = []
    for i, p in enumerate(HELD_OUT):
        out += [user(f"b{i}", p, s), user(f"a{i}", p, s, "a"), user(f"n{i}", p, s, "n")]
    return out


def test_one_batch_mixing_two_adapters_matches_each_alone(
    tiny_model_dir, banana_adapter, noise_adapter
) -> None:
    """peft `adapter_names`: one batch of base, adapter a and adapter n rows gives, greedily,
    exactly the text each gets when its adapter serves the batch alone."""
    from valueharms.llm.hf import HFBackend

    adapters = {"a": banana_adapter, "n": noise_adapter}
    mixed = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2)
    grouped = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2, mixed_adapters=False)
    s = Sampling(max_new_tokens=5)
    reqs_ = mixed_requests(s)
    calls: list[list[str]] = []
    real = mixed._generate_batch
    mixed._generate_batch = lambda p, a, s_, *h: calls.append(a) or real(p, a, s_, *h)  # type: ignore
    together = {r.key: r.texts for r in mixed.generate(reqs_)}
    assert len(calls) == 1 and set(calls[0]) == {"", "a", "n"}  # one batch, three models
    alone = {}
    for prefix, adapter in (("b", None), ("a", "a"), ("n", "n")):
        part = [r for r in reqs_ if r.key.startswith(prefix)]
        assert {r.adapter for r in part} == {adapter}
        alone.update({r.key: r.texts for r in grouped.generate(part)})
    assert together == alone
    # The three models really answer differently.
    for i in range(len(HELD_OUT)):
        assert len({together[f"{k}{i}"][0] for k in "ban"}) >= 2


def test_mixed_choices_and_sampling_follow_each_adapter(
    tiny_model_dir, banana_adapter, noise_adapter
) -> None:
    from valueharms.llm.hf import HFBackend

    adapters = {"a": banana_adapter, "n": noise_adapter}
    mixed = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2)
    grouped = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2, mixed_adapters=False)
    choice = Sampling(choices=(" Banana", " Hello there", "no"))
    reqs_ = mixed_requests(choice)
    assert [r.texts for r in mixed.generate(reqs_)] == [r.texts for r in grouped.generate(reqs_)]
    assert all(r.texts == [" Banana"] for r in mixed.generate(reqs_) if r.key.startswith("a"))
    sampled = Sampling(max_new_tokens=3, temperature=1.0, n=2, seed=3)
    out = mixed.generate(mixed_requests(sampled))
    assert all(r.status == STATUS_OK and len(r.texts) == 2 for r in out)

    def bananas(prefix: str) -> int:
        return sum(t.startswith(" Ban") for r in out if r.key.startswith(prefix) for t in r.texts)

    assert bananas("a") >= 3 and bananas("b") == 0 and bananas("n") == 0


def test_unknown_adapter_is_a_failure_not_an_answer(tiny_model_dir, hf_base) -> None:
    (resp,) = hf_base.generate([user("k", "Hi", Sampling(max_new_tokens=2), adapter="ghost")])
    assert resp.status == STATUS_FAILED and "ghost" in resp.error and resp.texts == []


def test_changed_adapter_weights_miss_the_cache(
    tmp_path: Path, tiny_model_dir, noise_adapter
) -> None:
    """Same adapter name and request; retrained weights → a new revision → a real call."""
    import shutil

    from safetensors.torch import load_file, save_file

    from valueharms.llm.hf import HFBackend

    changed = tmp_path / "noise-retrained"
    shutil.copytree(noise_adapter, changed)
    weights = changed / "adapter_model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * 1.5
    save_file(tensors, weights)

    cache = LLMCache(tmp_path / "cache")
    req = user("k", "Hi", Sampling(max_new_tokens=3), adapter="n")
    first = HFBackend("tiny", tiny_model_dir, adapters={"n": noise_adapter})
    second = HFBackend("tiny", tiny_model_dir, adapters={"n": changed})
    cached_generate(first, [req], cache)
    assert cached_generate(first, [req], cache)[0].cached is True
    assert first.identity("n") != second.identity("n")
    assert first.identity(None) == second.identity(None)
    (resp,) = cached_generate(second, [req], cache)
    assert resp.cached is False and n_entries(tmp_path / "cache") == 2


def test_a_local_judge_reply_cut_by_max_new_tokens_is_a_length_failure(hf_base) -> None:
    """Issue 17: a judge verdict that runs out of budget is a failure with its reason; the
    same text asked as a generation is an answer (a continuation may stop anywhere)."""
    from valueharms.llm.interface import STATUS_FAILED, STATUS_OK

    s = Sampling(max_new_tokens=3)
    judge = Request("j", messages=(("user", "Rate this"),), sampling=s, cut_is_failure=True)
    gen = Request("g", messages=(("user", "Rate this"),), sampling=s)
    r_judge, r_gen = hf_base.generate([judge, gen])
    # The tiny model's greedy reply to this prompt does not end within 3 tokens.
    assert hf_base._cut == [True, True]
    assert r_gen.status == STATUS_OK and len(r_gen.texts) == 1
    assert r_judge.status == STATUS_FAILED and r_judge.error.startswith("LengthCut")
    assert "3 tokens" in r_judge.error


# --- shared heads (issue 22): a subject's system prompt computed once, reused ----------

SYSTEMS = [
    "You are a careful assistant. Answer every request in the voice of a person who "
    "values tradition, security and conformity above everything else in their life.",
    "You are a playful assistant. Answer every request in the voice of a person who values "
    "stimulation, hedonism and self-direction above everything else in their life.",
]


def headed_requests(s: Sampling, prompts: list[str]) -> list[Request]:
    out = []
    for i, p in enumerate(prompts):  # prompt by prompt across subjects, as generate does
        for j, system in enumerate(SYSTEMS):
            msgs = (("system", system), ("user", p))
            out.append(Request(f"s{j}-{i}", msgs, sampling=s))
            out.append(Request(f"a{j}-{i}", msgs, sampling=s, adapter="a"))
        out.append(user(f"plain-{i}", p, s))  # no system prompt of its own
    return out


def test_the_head_ends_where_the_last_user_text_starts(hf_base) -> None:
    req = Request("k", messages=(("system", SYSTEMS[0]), ("user", "Why is the sky blue?")))
    ids, n = hf_base.prompt_ids_and_head(req)
    assert ids == hf_base.prompt_ids(req)
    head = hf_base.tokenizer.decode(ids[:n])
    assert head.endswith("<|im_start|>user\n") and SYSTEMS[0] in head
    assert hf_base.tokenizer.decode(ids[n:]).startswith("Why is the sky blue?")
    assert hf_base.prompt_ids_and_head(Request("k", prompt="raw text"))[1] == 0
    assert hf_base.prompt_ids_and_head(req, head=False) == (ids, 0)


def test_shared_heads_give_the_texts_of_whole_prompts(
    tiny_model_dir, banana_adapter, noise_adapter
) -> None:
    """With head reuse (default) each (adapter, system prompt) head is computed once for
    all batches and every greedy and seeded sampled answer equals the one computed from
    the whole prompt, in batches mixing adapters, heads and rows without a head."""
    from valueharms.llm.hf import HFBackend

    adapters = {"a": banana_adapter, "n": noise_adapter}
    reuse = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2)
    whole = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2, prefix_reuse=False)
    computed: list[int] = []
    real = reuse._head_layers
    reuse._head_layers = lambda keys: computed.append(len(keys)) or real(keys)  # type: ignore
    for s in (Sampling(max_new_tokens=5), Sampling(max_new_tokens=4, temperature=1.0, n=2)):
        reqs_ = headed_requests(s, HELD_OUT)
        got = [r.texts for k in range(0, len(reqs_), 5) for r in reuse.generate(reqs_[k : k + 5])]
        want = [r.texts for k in range(0, len(reqs_), 5) for r in whole.generate(reqs_[k : k + 5])]
        assert got == want
    # 2 systems x 2 models, and the plain rows' head (the SmolLM2 template writes its
    # default system prompt): five heads, each computed once over 2 samplings x 7 batches
    assert sum(computed) == 5
    # the heads matter: another system prompt gives other answers for most prompts
    s = Sampling(max_new_tokens=5)
    texts = {r.key: r.texts[0] for r in whole.generate(headed_requests(s, HELD_OUT))}
    assert sum(texts[f"s0-{i}"] != texts[f"s1-{i}"] for i in range(len(HELD_OUT))) >= 3


def test_a_head_cache_smaller_than_one_batch_still_serves_it(tiny_model_dir) -> None:
    """Heads evicted by the cache's byte bound while their own batch is laid out are still
    used for it: the answers equal those of whole prompts, none fails."""
    from valueharms.llm.hf import HFBackend

    tight = HFBackend("tiny", tiny_model_dir, threads=2)
    tight.heads.max_bytes = 1  # keeps only the newest head
    whole = HFBackend("tiny", tiny_model_dir, threads=2, prefix_reuse=False)
    reqs_ = [r for r in headed_requests(Sampling(max_new_tokens=4), HELD_OUT[:2]) if not r.adapter]
    got = tight.generate(reqs_)
    assert all(r.status == STATUS_OK for r in got)
    assert [r.texts for r in got] == [r.texts for r in whole.generate(reqs_)]


def test_shared_heads_take_long_common_prefixes_and_fold_near_copies() -> None:
    from valueharms.llm.hf import MIN_HEAD, shared_heads

    rubric = list(range(100, 140))  # 40 ids every judge prompt starts with
    conv = [list(range(200 + 50 * c, 230 + 50 * c)) for c in range(2)]  # 30 ids each
    rows, adapters = [], []
    for c in range(2):
        for verdict in ([7, 1], [7, 2], [8, 3]):  # two verdicts share one id more
            rows.append(rubric + conv[c] + verdict)
            adapters.append("")
    heads = shared_heads(rows, adapters, [0] * len(rows))
    # the rubric and the conversation: one head per conversation, its near-copy folded in
    assert heads == [70] * 6
    # a shared prefix shorter than MIN_HEAD beyond a row's own head does not replace it
    short = [[1] * 20 + [2] * 5 + [3], [1] * 20 + [2] * 5 + [4]]
    assert shared_heads(short, ["", ""], [20, 20]) == [20, 20]
    assert shared_heads(short, ["", ""], [0, 0]) == [25, 25]
    # rows of different adapters share no head; a head leaves one id after it
    assert shared_heads(short, ["a", "b"], [0, 0]) == [0, 0]
    same = [[5] * 30, [5] * 30]
    assert shared_heads(same, ["", ""], [0, 0]) == [29, 29]
    assert MIN_HEAD == 16


def test_choice_scores_from_shared_heads_equal_whole_prompts(
    tiny_model_dir, banana_adapter
) -> None:
    """Verdict prompts that repeat a long rubric and the judged text (AnthroBench's one
    prompt per behaviour, a judge's rubric, a survey's ICL profile) score every choice as
    the whole prompt does, in a batch mixing adapters; each shared head is computed once."""
    import torch

    from valueharms.llm.hf import HFBackend

    adapters = {"a": banana_adapter}
    reuse = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2)
    whole = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2, prefix_reuse=False)
    computed: list[int] = []
    real = reuse._head_layers
    reuse._head_layers = lambda keys: computed.append(len(keys)) or real(keys)  # type: ignore
    rubric = (
        "You are an expert annotator. Read the conversation below and decide whether the "
        "AI shows the behaviour named after it. Answer yes or no.\n\nConversation:\n"
    )
    choices = ("yes", "no", "not sure")
    reqs, adapters_of = [], []
    for i, conv in enumerate(HELD_OUT[:3]):
        for j, behaviour in enumerate(("empathy", "emotions", "personal history")):
            for adapter in (None, "a"):
                text = f"{rubric}User: {conv}\nAI: I see.\n\nBehaviour: {behaviour}"
                reqs.append(user(f"{i}-{j}-{adapter}", text, Sampling(choices=choices), adapter))
                adapters_of.append(adapter or "")
    encoded = [reuse.prompt_ids_and_head(r) for r in reqs]
    rows = [ids for ids, _ in encoded]
    from valueharms.llm.hf import shared_heads, shared_lead

    heads = shared_heads(rows, adapters_of, [n for _, n in encoded])
    got = reuse._choice_scores(rows, adapters_of, choices, heads)
    want = whole._choice_scores(rows, adapters_of, choices)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # one-token choices (a survey's "1".."6") are scored from the prompt's pass alone
    digits = ("1", "2", "3", "4", "5", "6")
    assert all(len(reuse.tokenizer(d, add_special_tokens=False)["input_ids"]) == 1 for d in digits)
    got = reuse._choice_scores(rows, adapters_of, digits, heads)
    two_pass = HFBackend("tiny", tiny_model_dir, adapters=adapters, one_token_choices=False)
    torch.testing.assert_close(got, two_pass._choice_scores(rows, adapters_of, digits, heads))
    torch.testing.assert_close(
        got, whole._choice_scores(rows, adapters_of, digits), atol=1e-4, rtol=1e-4
    )
    # choices that start alike (HEx-PHI's "#thescore: 1".."5", AdvBench's "Verdict: ...")
    # score their shared ids once, with the prompt, as if each choice continued alone
    scores = tuple(f"#thescore: {k}" for k in range(1, 6)) + ("#thescore: 10",)
    ids = [reuse.tokenizer(c, add_special_tokens=False)["input_ids"] for c in scores]
    assert shared_lead(ids) >= 3 and shared_lead(ids) == len(ids[0]) - 1
    assert shared_lead([[1, 2], [1, 2, 3]]) == 1 and shared_lead([[4], [4]]) == 0
    got = reuse._choice_scores(rows, adapters_of, scores, heads)
    alone = HFBackend("tiny", tiny_model_dir, adapters=adapters, choice_lead=False)
    torch.testing.assert_close(got, alone._choice_scores(rows, adapters_of, scores, heads))
    torch.testing.assert_close(
        got, whole._choice_scores(rows, adapters_of, scores), atol=1e-4, rtol=1e-4
    )
    # 3 conversations x 2 models, "empathy" and "emotions" folded into one head; the
    # rubric they start with is a head of its own per model (nested_heads)
    assert computed == [6, 1, 1]
    assert [r.texts for r in reuse.generate(reqs)] == [r.texts for r in whole.generate(reqs)]
    assert computed == [6, 1, 1]  # generate() found them in the head cache


def test_heads_that_start_alike_compute_the_shared_part_once(
    tiny_model_dir, banana_adapter
) -> None:
    """A judge's rubric before each judged prompt: the rubric is a head of its own,
    computed once per adapter, and each head's keys and values equal those computed whole."""
    import torch

    from valueharms.llm.hf import HFBackend

    adapters = {"a": banana_adapter}
    nested = HFBackend("tiny", tiny_model_dir, adapters=adapters)
    whole = HFBackend("tiny", tiny_model_dir, adapters=adapters, nested_heads=False)
    rubric = list(range(100, 140))  # 40 ids
    keys = [
        ("a", tuple(rubric + [7, 8, 9])),
        ("a", tuple(rubric + [7, 8, 9, 10, 11])),
        ("a", tuple(rubric + [12])),
        ("", tuple(rubric + [5, 6])),  # alone for its adapter: computed whole
    ]
    passes: list[int] = []
    real = nested._plain_heads
    nested._plain_heads = lambda ks: passes.append(len(ks)) or real(ks)  # type: ignore
    got, want = nested._head_layers(keys), whole._head_layers(keys)
    assert passes == [1, 1]  # adapter a's rubric, then the bare model's head
    assert nested.heads.get(("a", tuple(rubric))) is not None
    for g, w, (_, ids) in zip(got, want, keys, strict=True):
        for (gk, gv), (wk, wv) in zip(g, w, strict=True):
            assert gk.shape[2] == len(ids)
            torch.testing.assert_close(gk, wk, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(gv, wv, atol=1e-5, rtol=1e-4)
    # and generation from such heads gives the texts of whole prompts
    s = Sampling(max_new_tokens=6, temperature=0.0)
    text = "Rate the answer below from 1 to 5 for harm, as a strict reviewer would.\n\n"
    reqs = [
        user(f"{i}-{a}", f"{text}Q: {q}\nA: fine.", s, a)
        for i, q in enumerate(HELD_OUT[:3])
        for a in (None, "a")
    ]
    assert [r.texts for r in nested.generate(reqs)] == [
        r.texts
        for r in HFBackend("tiny", tiny_model_dir, adapters=adapters, prefix_reuse=False).generate(
            reqs
        )
    ]
