"""The openai backend, driven through the real `openai` client against a local HTTP server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_mock import BATCH_GET, MockOpenAI

from valueharms.llm.cache import LLMCache, cached_generate
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling
from valueharms.llm.openai_backend import MissingAPIKeyError, OpenAIBackend

SECRET = "sk-test-SECRET123"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


@pytest.fixture
def mock() -> Iterator[MockOpenAI]:
    with MockOpenAI(batch_polls=2, api_key=SECRET) as server:
        yield server


def make(mock: MockOpenAI, **kw: Any) -> OpenAIBackend:
    opts: dict[str, Any] = dict(
        base_url=mock.base_url,
        timeout=2.0,
        max_retries=3,
        backoff_base=0.01,
        backoff_max=0.05,
        poll_interval=0.05,
    )
    return OpenAIBackend("test-model", **(opts | kw))


def chat(i: int | str, **kw: Any) -> Request:
    return Request(f"k{i}", messages=(("system", "be brief"), ("user", f"q{i}")), **kw)


def texts(responses: list[Any]) -> list[list[str]]:
    return [r.texts for r in responses]


# --- online -------------------------------------------------------------------------------


def test_answers_keep_request_order_with_concurrent_workers(mock: MockOpenAI) -> None:
    mock.delay = 0.05
    backend = make(mock, concurrency=4)
    sampling = Sampling(max_new_tokens=7, temperature=0.3, top_p=0.9, seed=11)
    out = backend.generate([chat(i, sampling=sampling) for i in range(12)])
    assert [r.key for r in out] == [f"k{i}" for i in range(12)]
    assert texts(out) == [[f"echo:q{i}"] for i in range(12)]
    assert {r.status for r in out} == {STATUS_OK}
    assert 1 < mock.max_in_flight <= 4
    assert (backend.calls, backend.retries, backend.failed) == (12, 0, 0)
    calls = mock.generate_calls()
    assert {c.path for c in calls} == {"/v1/chat/completions"}
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {SECRET}"}
    body = next(c.body for c in calls if c.body["messages"][-1]["content"] == "q3")
    assert body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q3"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "n": 1,
        "seed": 11,
        "max_tokens": 7,
    }


def test_429_waits_as_long_as_retry_after_says(mock: MockOpenAI) -> None:
    mock.inject("429", 0.3)
    backend = make(mock, backoff_base=0.001)
    start = time.monotonic()
    (resp,) = backend.generate([chat(0)])
    assert time.monotonic() - start >= 0.3
    assert (resp.status, resp.texts) == (STATUS_OK, ["echo:q0"])
    assert (backend.calls, backend.retries, backend.failed) == (2, 1, 0)


@pytest.mark.parametrize(
    "fault",
    [
        ("500",),
        ("503",),
        ("408",),
        ("timeout", 1.5),
        ("malformed",),  # not JSON
        ("malformed", "nochoices"),
        ("malformed", "empty"),  # content: null
    ],
)
def test_transient_fault_is_retried_then_answered(mock: MockOpenAI, fault: tuple) -> None:
    mock.inject(*fault)
    backend = make(mock, timeout=0.5)
    (resp,) = backend.generate([chat(0)])
    assert (resp.status, resp.texts, resp.error) == (STATUS_OK, ["echo:q0"], None)
    assert (backend.calls, backend.retries, backend.failed) == (2, 1, 0)
    assert len(mock.generate_calls()) == 2


def test_fewer_choices_than_asked_is_malformed() -> None:
    from valueharms.llm.openai_backend import MalformedResponseError, extract_texts

    body = {"choices": [{"index": 1, "text": "b"}, {"index": 0, "text": "a"}]}
    assert extract_texts(body, chat=False, n=2) == ["a", "b"]
    with pytest.raises(MalformedResponseError, match="asked for 3 choices, got 2"):
        extract_texts(body, chat=False, n=3)


def test_client_errors_other_than_429_408_are_not_retried(mock: MockOpenAI) -> None:
    mock.inject("400")
    backend = make(mock)
    out = backend.generate([chat(0), chat(1)])
    failed = next(r for r in out if r.status == STATUS_FAILED)
    assert failed.error.startswith("BadRequestError: Error code: 400")
    assert (backend.calls, backend.retries, backend.failed) == (2, 0, 1)


def test_always_failing_prompt_fails_after_max_retries_and_is_not_cached(
    mock: MockOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The server quotes the bearer token back in its error body: it must be scrubbed.
    mock.always["qbad"] = ("500", "echo-auth")
    reqs = [chat(0), chat("bad"), chat(2)]
    backend = make(mock, max_retries=2)
    cache = LLMCache(tmp_path / "cache")
    first = cached_generate(backend, reqs, cache)
    assert [r.status for r in first] == [STATUS_OK, STATUS_FAILED, STATUS_OK]
    bad = first[1]
    assert bad.error.startswith("InternalServerError: Error code: 500")
    assert "Bearer ***" in bad.error
    assert (backend.calls, backend.retries, backend.failed) == (5, 2, 1)
    bad_calls = [c for c in mock.generate_calls() if c.body["messages"][-1]["content"] == "qbad"]
    assert len(bad_calls) == 3
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2

    n_before = len(mock.generate_calls())
    again = make(mock, max_retries=0)
    second = cached_generate(again, reqs, LLMCache(tmp_path / "cache"))
    new = mock.generate_calls()[n_before:]
    assert [c.body["messages"][-1]["content"] for c in new] == ["qbad"]
    assert [r.cached for r in second] == [True, False, True]
    assert (again.calls, again.retries, again.failed) == (1, 0, 1)

    # The key is nowhere we keep or print anything.
    assert SECRET in str([c.headers for c in bad_calls])  # it was sent, and echoed...
    assert all(SECRET not in (r.error or "") for r in first + second)
    assert SECRET not in caplog.text
    assert "retry 1/2" in caplog.text
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8")


def test_key_is_masked_before_long_errors_are_cut(mock: MockOpenAI) -> None:
    backend = make(mock)
    backend.generate([chat(0)])  # builds the client, reading the key
    for pad in range(280, 300):  # the cut falls inside the key for some of these
        msg = backend._describe(RuntimeError("x" * pad + SECRET + " tail"))
        assert SECRET[:6] not in msg and len(msg) <= 300


def test_n_choices_come_back_in_choice_order(mock: MockOpenAI) -> None:
    backend = make(mock)
    (resp,) = backend.generate([chat(0, sampling=Sampling(n=3, temperature=0.8))])
    assert resp.texts == ["echo:q0#0", "echo:q0#1", "echo:q0#2"]
    assert mock.generate_calls()[0].body["n"] == 3


def test_prompt_only_requests_use_the_completions_endpoint(mock: MockOpenAI) -> None:
    backend = make(mock)
    out = backend.generate([Request("p", prompt="Once upon a time"), chat(1)])
    assert texts(out) == [["echo:Once upon a time"], ["echo:q1"]]
    by_path = {c.path: c.body for c in mock.generate_calls()}
    assert by_path["/v1/completions"]["prompt"] == "Once upon a time"
    assert "messages" not in by_path["/v1/completions"]
    assert "/v1/chat/completions" in by_path


def test_reasoning_models_get_max_completion_tokens_and_no_temperature(mock: MockOpenAI) -> None:
    sampling = Sampling(max_new_tokens=77, temperature=0.2, top_p=0.9)
    (resp,) = make(mock, reasoning=True).generate([chat(0, sampling=sampling)])
    assert resp.status == STATUS_OK
    body = mock.generate_calls()[0].body
    # The larger of the step's budget and the reasoning budget (hidden tokens count).
    assert body["max_completion_tokens"] == 16384
    assert not {"max_tokens", "temperature", "top_p"} & set(body)
    make(mock).generate([chat(1, sampling=sampling)])  # other models: as before
    plain = mock.generate_calls()[1].body
    assert plain["max_tokens"] == 77 and plain["temperature"] == 0.2


def test_adapter_is_sent_as_the_model_name(mock: MockOpenAI) -> None:
    backend = make(mock, revision="2024-08-06")
    (resp,) = backend.generate([chat(0, adapter="lora-harm")])
    assert resp.status == STATUS_OK
    assert mock.generate_calls()[0].body["model"] == "lora-harm"
    assert backend.identity(None) == {
        "backend": "openai",
        "model": "test-model",
        "revision": "2024-08-06",
    }
    assert backend.identity("lora-harm")["model"] == "lora-harm"
    assert make(mock).identity(None)["revision"] == "test-model"
    assert mock.base_url not in json.dumps(backend.identity(None))


def test_choices_are_a_configuration_error(mock: MockOpenAI) -> None:
    req = chat(0, sampling=Sampling(choices=("yes", "no")))
    with pytest.raises(ValueError, match="judges.llm.mode: generate"):
        make(mock).generate([chat(1), req])
    assert mock.requests == []


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("MY_LAB_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        OpenAIBackend("m", base_url="https://api.example.invalid/v1").generate([chat(0)])
    remote = OpenAIBackend("m", api_key_env="MY_LAB_KEY")
    with pytest.raises(MissingAPIKeyError, match="MY_LAB_KEY"):
        remote.generate([chat(0)])


def test_local_server_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with MockOpenAI() as local:
        (resp,) = make(local).generate([chat(0)])
        assert resp.status == STATUS_OK
        assert local.generate_calls()[0].headers["authorization"].startswith("Bearer ")


# --- batch --------------------------------------------------------------------------------


def test_batch_results_are_joined_by_custom_id_in_request_order(
    mock: MockOpenAI, tmp_path: Path
) -> None:
    backend = make(mock, batch=True, batch_dir=tmp_path)
    reqs = [chat(i, sampling=Sampling(n=2, temperature=0.5)) for i in range(4)]
    reqs.insert(2, Request("p", prompt="tell me"))
    out = backend.generate(reqs)
    assert [r.key for r in out] == ["k0", "k1", "p", "k2", "k3"]
    assert texts(out) == [
        ["echo:q0#0", "echo:q0#1"],
        ["echo:q1#0", "echo:q1#1"],
        ["echo:tell me"],
        ["echo:q2#0", "echo:q2#1"],
        ["echo:q3#0", "echo:q3#1"],
    ]
    # One batch per endpoint; each polled until done (batch_polls=2).
    assert mock.n_batches_created == 2
    assert mock.generate_calls() == []
    uploads = mock.calls("/v1/files", method="POST")
    assert {u.body["purpose"] for u in uploads} == {"batch"}
    lines = [json.loads(x) for u in uploads for x in u.body["file"][0].decode().splitlines()]
    assert {line["url"] for line in lines} == {"/v1/chat/completions", "/v1/completions"}
    assert all(line["method"] == "POST" for line in lines)
    assert len({line["custom_id"] for line in lines}) == 5
    chat_line = next(line for line in lines if line["url"] == "/v1/chat/completions")
    assert chat_line["body"]["model"] == "test-model" and chat_line["body"]["n"] == 2
    assert list(tmp_path.iterdir()) == []  # collected: nothing left to resume


def test_batch_partial_failures_fail_only_those_requests(mock: MockOpenAI, tmp_path: Path) -> None:
    backend = make(mock, batch=True, batch_dir=tmp_path)
    reqs = [chat(i) for i in range(6)]
    # custom_ids are index-based; read them from the uploaded file to stay honest.
    mock.batch_error_ids = {"request-1"}
    mock.batch_500_ids = {"request-3"}
    mock.batch_drop_ids = {"request-4"}
    out = backend.generate(reqs)
    ids = [json.loads(x)["custom_id"] for x in mock.files["file-1"].decode().splitlines()]
    assert ids == [f"request-{i}" for i in range(6)]
    assert [r.status == STATUS_OK for r in out] == [True, False, True, False, False, True]
    assert texts(out)[5] == ["echo:q5"]
    assert out[1].error.startswith("BatchError: server_error: boom")
    assert out[3].error.startswith("BatchHTTPError: status 500")
    assert out[4].error.startswith("BatchMissing")
    assert backend.failed == 3


def test_failed_batch_fails_every_request(
    mock: MockOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    mock.batch_fail = "line 1: unknown model"
    backend = make(mock, batch=True, batch_dir=tmp_path)
    out = backend.generate([chat(i) for i in range(3)])
    assert {r.status for r in out} == {STATUS_FAILED}
    assert all("failed" in r.error and "unknown model" in r.error for r in out)
    assert out[0].error.startswith("BatchFailed: batch batch-")
    assert backend.failed == 3
    assert list(tmp_path.iterdir()) == []  # a rerun submits again
    assert "batch-2: failed" in caplog.text


def test_killed_batch_job_resumes_the_same_batch(
    mock: MockOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reqs = [chat(i) for i in range(3)]
    mock.batch_polls = 3
    mock.inject("500", route=BATCH_GET)  # the first poll dies, as a killed job would
    first = make(mock, batch=True, batch_dir=tmp_path, max_retries=0)
    with pytest.raises(Exception, match="500"):
        first.generate(reqs)
    (state_file,) = tmp_path.iterdir()
    state = json.loads(state_file.read_text(encoding="utf-8"))
    assert state["batch_id"] == "batch-2"
    assert SECRET not in state_file.read_text(encoding="utf-8")

    second = make(mock, batch=True, batch_dir=tmp_path)
    out = second.generate(reqs)
    assert texts(out) == [["echo:q0"], ["echo:q1"], ["echo:q2"]]
    assert mock.n_batches_created == 1
    assert len(mock.calls("/v1/files", method="POST")) == 1
    assert "resuming batch batch-2" in caplog.text
    assert list(tmp_path.iterdir()) == []
    assert SECRET not in caplog.text


def _budget_backend(mock, **kw):
    from valueharms.llm.openai_backend import OpenAIBackend

    return OpenAIBackend("judge", base_url=mock.base_url, max_retries=1, backoff_base=0.0, **kw)


def test_a_judge_reply_cut_by_its_budget_is_a_failure_with_that_reason(monkeypatch):
    """Issue 17/18: finish_reason "length" on a judge request is a failure, not a verdict;
    a generation cut by its budget is an ordinary answer."""
    from openai_mock import MockOpenAI

    from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with MockOpenAI() as mock:
        mock.budget = True
        backend = _budget_backend(mock)
        s = Sampling(max_new_tokens=3)
        long = "one two three four five"
        judge = Request("j", messages=(("user", long),), sampling=s, cut_is_failure=True)
        gen = Request("g", messages=(("user", long),), sampling=s)
        short = Request("s", messages=(("user", "ok"),), sampling=s, cut_is_failure=True)
        r_judge, r_gen, r_short = backend.generate([judge, gen, short])
        assert r_judge.status == STATUS_FAILED and r_judge.error.startswith("LengthCut")
        assert "3 tokens" in r_judge.error
        assert r_gen.status == STATUS_OK and r_gen.texts == ["echo:one two three"]
        assert r_short.status == STATUS_OK and r_short.texts == ["echo:ok"]
        # Cut replies are not retried: one HTTP call each.
        assert len([r for r in mock.requests if r.path.endswith("completions")]) == 3


def test_an_empty_reply_cut_by_hidden_reasoning_is_a_length_failure_not_retried(monkeypatch):
    from openai_mock import MockOpenAI

    from valueharms.llm.interface import STATUS_FAILED, Request, Sampling

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with MockOpenAI() as mock:
        mock.budget, mock.reasoning_words = True, 10
        backend = _budget_backend(
            mock, reasoning=True, reasoning_budget=8, reasoning_retry_factor=1
        )
        req = Request("r", messages=(("user", "x"),), sampling=Sampling(max_new_tokens=8))
        (resp,) = backend.generate([req])
        assert resp.status == STATUS_FAILED
        assert "LengthCut" in resp.error and "no visible text" in resp.error
        assert backend.retries == 0 and len(mock.generate_calls()) == 1


def test_a_reasoning_judge_cut_by_its_budget_is_retried_once_with_a_larger_one(monkeypatch):
    """Issue 18: an o4-mini-style judge spends hidden tokens; a reply cut by its budget is
    asked once more at reasoning_retry_factor times it; one that stays cut is a failure."""
    from openai_mock import MockOpenAI

    from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with MockOpenAI() as mock:
        mock.budget, mock.reasoning_words = True, 20
        backend = _budget_backend(mock, reasoning=True, reasoning_budget=16)
        s = Sampling(max_new_tokens=8)
        req = Request("r", messages=(("user", "refused"),), sampling=s, cut_is_failure=True)
        (resp,) = backend.generate([req])
        assert resp.status == STATUS_OK and resp.texts == ["echo:refused"]
        budgets = [c.body["max_completion_tokens"] for c in mock.generate_calls()]
        assert budgets == [16, 64] and backend.length_retries == 1

        mock.reasoning_words = 100  # still cut at 64: a counted failure with its reason
        (stays,) = backend.generate([Request("s", messages=(("user", "x"),), sampling=s)])
        assert stays.status == STATUS_FAILED and "LengthCut" in stays.error
        assert "(64 tokens)" in stays.error and backend.length_retries == 2
        assert "reasoning_budget" in backend.identity(None)


def test_the_reasoning_budget_and_retry_are_config_keys():
    from valueharms.config import validate

    cfg = validate({})
    assert cfg["backends"]["openai"]["reasoning_budget"] >= 4096
    assert cfg["backends"]["openai"]["reasoning_retry_factor"] == 4
