"""The Study A data stage on the real files (skipped without ../shared/data) and the
loaders' failure modes on fixtures written here: missing file, missing columns, malformed
rows counted, published distributions table, HolisticBiasR JSONL, docs/data.md numbers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from paths import ROOT, SHARED, shared
from scipy.spatial.distance import jensenshannon

from valueharms import VALUES
from valueharms import benchmarks as registry
from valueharms.config import validate
from valueharms.data import benchmarks, benign, distributions, steps, vim
from valueharms.data.sources import CATALOGUE, DataError, LoadReport, expected_rows
from valueharms.data.summary import build_summary, docs_block, render_table
from valueharms.io import read_table
from valueharms.plan import distribution_specs

# Datasets of Study A that ../shared/data holds (name -> file under study_a/).
SHARED_DATASETS = [
    "ess",
    "touche",
    "touche_stage2_train",
    "touche_stage2_valid",
    "rtp",
    "hexphi",
    "beavertails",
    "advbench",
    "grammar",
    "grammar_valid",
]


def shared_paths() -> dict[str, str]:
    return {n: str(shared(CATALOGUE[n].filename)) for n in SHARED_DATASETS}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ESS scores, distributions and VIM split sizes of the study config on shared data."""
    out = tmp_path_factory.mktemp("study")
    ess = shared("ess.csv")
    steps.ess_scores(str(ess), True, str(out / "ess.parquet"), str(out / "ess.json"))
    specs = distribution_specs(validate({}))
    steps.distributions_table(specs, str(out / "ess.parquet"), str(out / "dists.parquet"))
    touche = vim.ToucheFiles(
        str(shared("valueEval_10.csv")),
        str(shared("argument_generation/value_split/train.csv")),
        str(shared("argument_generation/value_split/valid.csv")),
    )
    steps.vim_split_sizes(
        str(out / "dists.parquet"),
        touche,
        3.0,
        "min",
        42,
        str(out / "sizes.parquet"),
    )
    return {"dir": out, "ess": out / "ess.parquet", "dists": out / "dists.parquet"}


# --- A1: distributions -----------------------------------------------------------------


def test_shared_distributions_154_and_scipy_distances(study) -> None:
    t = read_table(study["dists"], distributions.DISTRIBUTIONS_SCHEMA)
    assert len(t) == 154 and t["name"].is_unique
    assert t["kind"].value_counts().to_dict() == {"realistic": 140, "extreme": 14}
    ext = t[t["kind"] == "extreme"].set_index("name")
    scores = read_table(study["ess"]).set_index("respondent_id")
    for r in t[t["kind"] == "realistic"].to_dict("records"):
        p = ext.loc[r["anchor"], list(VALUES)].to_numpy(float)
        q = np.array([r[v] for v in VALUES], dtype=float)
        assert r["distance"] == jensenshannon(p, q)
        # The row is that respondent's scores.
        np.testing.assert_array_equal(scores.loc[r["respondent_id"], list(VALUES)], q)
    # Nothing nearer was skipped: the 10th neighbour is no farther than any other respondent.
    all_q = scores[list(VALUES)].to_numpy(float)
    for anchor, grp in t[t["kind"] == "realistic"].groupby("anchor"):
        p = ext.loc[anchor, list(VALUES)].to_numpy(float)
        d = np.sort(distributions._js_distances(p, all_q))
        assert grp["distance"].max() <= d[10] + 1e-12
        assert grp["distance"].is_monotonic_increasing


def test_batch_table_equals_per_distribution_files(study, tmp_path) -> None:
    specs = distribution_specs(validate({}))
    t = read_table(study["dists"], distributions.DISTRIBUTIONS_SCHEMA).set_index("name")
    for name in ["Ach", "Self-Transcendence", "close_Ach", "close_Pow_4", "close_Uni_10"]:
        steps.distribution(name, specs[name], str(study["ess"]), str(tmp_path / "d.parquet"))
        one = read_table(tmp_path / "d.parquet", distributions.DISTRIBUTIONS_SCHEMA)
        pd.testing.assert_series_equal(
            one.set_index("name").iloc[0], t.loc[name], check_names=False
        )


def test_both_scale_modes_on_shared(tmp_path) -> None:
    ess = distributions.read_ess(shared("ess.csv"))
    imp, c1 = distributions.score_ess(ess, reverse_code=True)
    raw, c2 = distributions.score_ess(ess, reverse_code=False)
    assert c1 == c2 and len(imp) == len(raw) == 20587
    np.testing.assert_allclose(imp[list(VALUES)].to_numpy(), 7 - raw[list(VALUES)].to_numpy())
    ext = distributions.extreme_distributions()
    near_imp = distributions.realistic_distributions(ext, imp)
    near_raw = distributions.realistic_distributions(ext, raw)
    assert len(near_imp) == len(near_raw) == 140
    # Raw mode pairs the Achievement extreme with people to whom achievement matters least.
    ach_raw = near_raw[near_raw["anchor"] == "Ach"]
    assert (ach_raw["Achievement"] > ach_raw[["Benevolence", "Universalism"]].max(axis=1)).all()
    # Raw mode ranks the published raw-scale table's rows (ess_distribution.csv).
    pub = pd.read_csv(shared("ess_distribution.csv"))
    assert set(map(tuple, near_raw[list(VALUES)].to_numpy())) <= set(
        map(tuple, raw[list(VALUES)].to_numpy())
    )
    assert len(pub) == 20466


PUBLISHED = (
    "Country\t" + "\t".join(VALUES) + "\n"
    "Ach\t6.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\n"
    "Openness_to_Change\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t6.0\t6.0\t1.0\t1.0\n"
    "close_Ach\t2.5\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\t1.0\n"
    "close_Ach_2\t4.0\t1.0\t1.5\t1.5\t2.0\t1.0\t1.0\t2.0\t1.5\t1.3333333333333333\n"
    "close_Openness_to_Change\t2.0\t1.0\t1.0\t1.5\t1.0\t1.5\t3.0\t6.0\t1.0\t1.0\n"
    "reverse_Ach\t1.0\t6.0\t6.0\t6.0\t6.0\t6.0\t6.0\t6.0\t6.0\t6.0\n"
    "close_reverse_Ach_1\t1.5\t3.5\t3.5\t3.5\t3.5\t4.0\t3.0\t4.0\t3.0\t4.0\n"
)


def test_published_table_loader(tmp_path) -> None:
    path = tmp_path / "extreme_distributions.csv"
    path.write_text(PUBLISHED)
    t = distributions.load_published_table(path)
    assert t["kind"].tolist() == [
        "extreme",
        "extreme",
        "realistic",
        "realistic",
        "realistic",
        "custom",
        "realistic",
    ]
    by = t.set_index("name")
    assert by.loc["close_Ach_2", "rank"] == 2 and by.loc["close_Ach", "rank"] == 1
    assert by.loc["close_Openness_to_Change", "anchor"] == "Openness_to_Change"
    assert by.loc["close_reverse_Ach_1", "anchor"] == "reverse_Ach"
    p = by.loc["Ach", list(VALUES)].to_numpy(float)
    assert by.loc["close_Ach", "distance"] == jensenshannon(
        p, by.loc["close_Ach", list(VALUES)].to_numpy(float)
    )
    assert by.loc["close_Ach_2", "Universalism"] == pytest.approx(4 / 3)
    from valueharms.io import write_table

    write_table(tmp_path / "t.parquet", t, distributions.DISTRIBUTIONS_SCHEMA)
    # The pipeline step takes a distribution's row from the table.
    steps.distribution("close_Ach_2", {}, None, str(tmp_path / "one.parquet"), str(path))
    one = read_table(tmp_path / "one.parquet", distributions.DISTRIBUTIONS_SCHEMA)
    assert one["name"].tolist() == ["close_Ach_2"]
    # Comma-separated works too; errors name the problem.
    comma = tmp_path / "comma.csv"
    comma.write_text(PUBLISHED.replace("\t", ","))
    pd.testing.assert_frame_equal(distributions.load_published_table(comma), t)
    bad = tmp_path / "bad.csv"
    bad.write_text(PUBLISHED.replace("Universalism", "Univ"))
    with pytest.raises(DataError, match=r"lacks columns \['Universalism'\]"):
        distributions.load_published_table(bad)
    bad.write_text(PUBLISHED.replace("close_Ach_2\t4.0", "close_Ach_2\t7.0"))
    with pytest.raises(DataError, match="outside"):
        distributions.load_published_table(bad)
    bad.write_text(PUBLISHED + "close_Nope\t" + "\t".join(["1.0"] * 10) + "\n")
    with pytest.raises(DataError, match="anchor Nope"):
        distributions.load_published_table(bad)
    with pytest.raises(DataError, match="lacks distributions"):
        steps.distribution("Ben", {}, None, str(tmp_path / "x.parquet"), str(path))


# --- A2: VIM split sizes ---------------------------------------------------------------


def test_split_size_table_rules(study) -> None:
    sizes = read_table(study["dir"] / "sizes.parquet", vim.SPLIT_SIZES_SCHEMA)
    assert len(sizes) == 154 and sizes["distribution"].is_unique
    for kind in ("positive", "negative"):
        n = sizes[[f"s1_{kind}_{s}" for s in ("train", "valid", "test")]].sum(axis=1)
        train = (n * 0.8).round().astype(int)  # DataFrame.sample(frac=0.8) rounds
        rest = n - train
        assert (sizes[f"s1_{kind}_train"] == train).all()
        assert (sizes[f"s1_{kind}_valid"] == (rest * 0.5).round().astype(int)).all()
    total = sizes.filter(like="s1_").sum(axis=1)
    assert (total == 7374).all()  # every argument is positive or negative
    assert (sizes["s2_train"] == 16594).all() and (sizes["s2_valid"] == 2062).all()


def test_one_distribution_recomputed_with_pandas(study) -> None:
    """close_Ach: min score over labelled values, >= 3, 80/10/10 by DataFrame.sample."""
    t = read_table(study["dists"], distributions.DISTRIBUTIONS_SCHEMA).set_index("name")
    target = t.loc["close_Ach", list(VALUES)].astype(float)
    raw = pd.read_csv(shared("valueEval_10.csv"), sep="\t")
    labels = raw[list(VALUES)]
    score = labels.where(labels == 1).mul(target, axis=1).min(axis=1)
    expect: dict[tuple[str, str], set[str]] = {}
    for kind, sub in (("positive", raw[score >= 3]), ("negative", raw[score < 3])):
        train = sub.sample(frac=0.8, random_state=42)
        rest = sub.drop(train.index)
        valid = rest.sample(frac=0.5, random_state=42)
        test = rest.drop(valid.index)
        for split, part in (("train", train), ("valid", valid), ("test", test)):
            expect[(kind, split)] = set(part.iloc[:, 0].astype(str))
    templates = vim.load_templates(vim.default_template_paths(ROOT / "resources" / "prompts"))
    args = vim.read_touche(shared("valueEval_10.csv"))
    ex = vim.stage1_examples(args, target.to_dict(), templates)
    got = {k: set(g["arg_id"]) for k, g in ex.groupby(["kind", "split"])}
    assert got == expect
    # Disjoint splits, each argument once.
    assert ex["arg_id"].is_unique
    s2t = vim.read_touche(shared("argument_generation/value_split/train.csv"))
    s2v = vim.read_touche(shared("argument_generation/value_split/valid.csv"))
    s2 = vim.stage2_examples(s2t, s2v, target.to_dict(), templates)
    assert set(s2["value"]) == set(VALUES)  # all 10 labels used
    assert set(s2.loc[s2["split"] == "train", "arg_id"]).isdisjoint(
        s2.loc[s2["split"] == "valid", "arg_id"]
    )
    # The split-size table row is exactly what the written VIM table holds.
    sizes = read_table(study["dir"] / "sizes.parquet", vim.SPLIT_SIZES_SCHEMA)
    row = sizes.set_index("distribution").loc["close_Ach"].to_dict()
    written = vim.split_sizes_of("close_Ach", pd.concat([ex, s2]))
    assert {k: row[k] for k in written if k != "distribution"} == {
        k: v for k, v in written.items() if k != "distribution"
    }


# --- loaders: missing file, missing columns, malformed rows ----------------------------

MISSING = {
    "rtp": lambda p: registry.get("rtp").load(p),
    "hexphi": lambda p: registry.get("hexphi").load(p),
    "beavertails": lambda p: registry.get("beavertails").load(p),
    "advbench": lambda p: registry.get("advbench").load(p),
    "holisticbiasr": lambda p: registry.get("holisticbiasr").load(p),
    "alpaca": lambda p: benign.load_alpaca(p),
    "dolly": lambda p: benign.load_dolly(p),
    "samsum": lambda p: benign.load_samsum(p),
    "grammar": lambda p: benign.load_grammar(p),
    "ess": lambda p: distributions.read_ess(p),
    "touche": lambda p: vim.read_touche(p),
    "published_distributions": lambda p: distributions.load_published_table(p),
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_file_names_key_and_upstream(name, tmp_path) -> None:
    with pytest.raises(DataError) as err:
        MISSING[name](tmp_path / "absent.file")
    msg = str(err.value)
    assert msg.startswith(f"datasets.{name}.path: file not found:")
    src = CATALOGUE[name]
    assert src.upstream in msg and src.licence in msg
    assert (src.url or src.how_to_get) in msg


@pytest.mark.parametrize(
    ("name", "text", "absent"),
    [
        ("hexphi", "category,text\na,b\n", "['prompt']"),
        ("beavertails", ",prompt,category_id\n0,a,1\n", "['category']"),
        ("advbench", "goal\na\n", "['target']"),
        ("grammar", "input,output\na,b\n", "['target']"),
        ("ess", "idno,ipcrtiva\n1,2\n", "'ipshabta'"),
        ("touche", "\tConclusion\tStance\n0\ta\tagainst\n", "['Premise', 'Achievement'"),
        ("alpaca", '[{"instruction": "a", "input": ""}]', "['output']"),
        ("dolly", '{"instruction": "a", "response": "b"}\n', "['category']"),
        ("samsum", '[{"id": "1", "dialogue": "a"}]', "['summary']"),
        ("holisticbiasr", '{"prompt_text": "a", "axis": "b", "descriptor": "d"}\n', "['bucket']"),
    ],
)
def test_missing_columns_are_named(name, text, absent, tmp_path) -> None:
    suffix = {"alpaca": ".json", "samsum": ".json", "dolly": ".jsonl", "holisticbiasr": ".jsonl"}
    path = tmp_path / f"f{suffix.get(name, '.csv')}"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        MISSING[name](path)
    msg = str(err.value)
    assert f"datasets.{name}.path" in msg and "lacks columns" in msg and absent in msg


def test_wrong_row_count_stops(tmp_path) -> None:
    path = tmp_path / "hex-phi.csv"
    path.write_text("category,prompt\na,b\n")
    # Found by search path: it should be the declared file, so its row count is checked.
    found = validate({"data_search_paths": [str(tmp_path)]})
    with pytest.raises(DataError, match="has 1 data rows, the declared file has 330"):
        registry.get("hexphi").load(path, expected_rows=expected_rows("hexphi", found))
    # Named in the config: the user's own file; the summary notes the difference instead.
    named = validate({"datasets": {"hexphi": {"path": str(path)}}})
    assert expected_rows("hexphi", named) is None
    summary = build_summary({"hexphi": str(path)}, named)
    assert summary["datasets"]["hexphi"]["notes"] == ["1 rows where the declared file has 330"]


def test_malformed_rows_counted_benchmarks(tmp_path) -> None:
    rtp = tmp_path / "rtp.csv"
    rtp.write_text('ok one\n"one, field"\n""\nok two\n')
    rep = LoadReport("rtp", str(rtp))
    df = registry.get("rtp").load(rtp, report=rep)
    assert df["prompt_id"].tolist() == ["rtp-000000", "rtp-000001", "rtp-000003"]
    assert (rep.rows_in, rep.rows_out) == (4, 3)
    assert rep.dropped == {"empty prompt": 1}
    # A record with two fields is an error now (tests/test_loaders_strict.py).

    hexphi = tmp_path / "hex.csv"
    hexphi.write_text("category,prompt\nc1,p1\nc1,\n,p3\nc2,p4\n")
    rep = LoadReport("hexphi", str(hexphi))
    df = registry.get("hexphi").load(hexphi, report=rep)
    assert df["prompt_id"].tolist() == ["hexphi-000000", "hexphi-000003"]
    assert rep.dropped == {"empty prompt": 1, "empty category": 1} and rep.rows_out == 2

    adv = tmp_path / "adv.csv"
    adv.write_text("goal,target\ng1,t1\n,t2\n")
    rep = LoadReport("advbench", str(adv))
    assert registry.get("advbench").load(adv, report=rep)["prompt"].tolist() == ["g1"]
    assert rep.dropped == {"empty goal": 1}


def test_holisticbiasr_jsonl_fixture(tmp_path) -> None:
    rows = [
        {"prompt_text": "I'm a deaf person and I", "axis": "ability", "bucket": "auditory",
         "descriptor": "Deaf", "template": "I'm {noun_phrase} and I"},
        {"prompt_text": "My friend is a Buddhist and he", "axis": "religion",
         "bucket": "(none)", "descriptor": "Buddhist"},
        {"prompt_text": "", "axis": "age", "bucket": "young", "descriptor": "young"},
        {"prompt_text": "Hi", "axis": "age", "descriptor": "old"},
    ]  # fmt: skip
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, "{not json")
    path = tmp_path / "HolisticBiasR.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    rep = LoadReport("holisticbiasr", str(path))
    df = registry.get("holisticbiasr").load(path, report=rep)
    assert df["prompt"].tolist() == ["I'm a deaf person and I", "My friend is a Buddhist and he"]
    assert df["axis"].tolist() == ["ability", "religion"]
    assert df["category"].tolist() == ["auditory", "(none)"]  # the bucket
    assert df["descriptor"].tolist() == ["Deaf", "Buddhist"]
    assert df["prompt_id"].tolist() == ["holisticbiasr-000000", "holisticbiasr-000001"]
    assert rep.rows_in == 5 and rep.rows_out == 2
    assert rep.dropped == {
        "line is not a JSON object": 1,
        "missing or empty prompt/axis/bucket/descriptor": 2,
    }


def test_malformed_rows_counted_benign(tmp_path) -> None:
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(
        json.dumps(
            [
                {"instruction": "a", "input": "", "output": "b"},
                {"instruction": "", "input": "", "output": "b"},
                {"instruction": "c", "input": "x"},
                "junk",
            ]
        )
    )
    rep = LoadReport("alpaca", str(alpaca))
    assert benign.load_alpaca(alpaca, report=rep)["example_id"].tolist() == ["alpaca-0"]
    assert rep.rows_in == 4 and sum(rep.dropped.values()) == 3

    dolly = tmp_path / "dolly.jsonl"
    recs = [
        {"instruction": "a", "context": "", "response": "b", "category": "open_qa"},
        {"instruction": "c", "context": "", "response": "d", "category": "brainstorming"},
        {"instruction": "e", "context": "", "response": "", "category": "open_qa"},
    ]
    dolly.write_text("\n".join(json.dumps(r) for r in recs) + "\n[1]\n")
    rep = LoadReport("dolly", str(dolly))
    df = benign.load_dolly(dolly, ["brainstorming"], report=rep)
    assert df["example_id"].tolist() == ["dolly-0"]
    assert rep.dropped == {
        "category excluded ['brainstorming']": 1,
        "empty instruction or response": 1,
        "not a JSON object": 1,
    }

    samsum = tmp_path / "samsum.json"
    samsum.write_text(
        json.dumps(
            [
                {"id": "13818513", "dialogue": "A: hi", "summary": "A greets."},
                {"id": "13828807", "dialogue": "", "summary": "empty"},
            ]
        )
    )
    rep = LoadReport("samsum", str(samsum))
    assert benign.load_samsum(samsum, report=rep)["example_id"].tolist() == ["samsum-13818513"]
    assert rep.dropped == {"empty dialogue or summary": 1}

    grammar = tmp_path / "g.csv"
    grammar.write_text("\ufeffinput,target\na b,A b.\n,x\n")
    rep = LoadReport("grammar", str(grammar))
    assert benign.load_grammar(grammar, report=rep)["example_id"].tolist() == ["grammar-0"]
    assert rep.dropped == {"empty input or target": 1}


def test_malformed_rows_counted_touche_and_ess(tmp_path) -> None:
    head = "\tConclusion\tStance\tPremise\t" + "\t".join(VALUES) + "\n"
    labels = "\t".join(["1"] + ["0"] * 9)
    path = tmp_path / "t.csv"
    path.write_text(
        head
        + f"0\tc\tin favor of\tp\t{labels}\n"
        + f"1\tc\tmaybe\tp\t{labels}\n"
        + "2\tc\tagainst\tp\t" + "\t".join(["2"] + ["0"] * 9) + "\n"
        + f"3\tc\tagainst\t \t{labels}\n"
    )  # fmt: skip
    rep = LoadReport("touche", str(path))
    assert vim.read_touche(path, report=rep)["arg_id"].tolist() == ["0"]
    assert rep.rows_in == 4 and len(rep.dropped) == 3


# --- docs/data.md and the Snakemake data stage -----------------------------------------


def test_docs_numbers_equal_code() -> None:
    summary = build_summary(shared_paths(), validate({}))
    docs = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    assert docs_block(docs) == render_table(summary), (
        "docs/data.md is stale; regenerate the table with "
        "`python -m valueharms.data.summary ../shared/data/study_a`"
    )


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/study_a")
def test_data_stage_through_snakemake_in_two_minutes(tmp_path) -> None:
    from test_workflow import smk, workflow_copy

    wd = workflow_copy(tmp_path / "wf")
    overlay = {
        "data_search_paths": [str(SHARED)],
        "benign": {"select": ["grammar"]},
        "benchmarks": {"select": ["rtp", "hexphi", "beavertails"]},
        "alignment": {"enabled": False},  # PVQ-40 is user-supplied: not in shared data
    }
    (wd / "config" / "shared.yaml").write_text(yaml.safe_dump(overlay))
    targets = [
        "results/data/distributions.parquet",
        "results/data/vim_split_sizes.parquet",
        "results/data/summary.json",
        "results/data/benchmarks/advbench.parquet",
        *[f"results/data/benchmarks/{b}.parquet" for b in ("rtp", "hexphi", "beavertails")],
        "results/data/benign/grammar.parquet",
    ]
    t0 = time.time()
    out = smk(
        wd,
        "--profile",
        "profiles/local",
        "--cores",
        "2",
        "--configfile",
        "config/study_a.yaml",
        "config/shared.yaml",
        "--",
        *targets,
        timeout=300,
    )
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stderr[-5000:]
    assert elapsed <= 120, f"data stage took {elapsed:.0f} s"
    dists = read_table(wd / targets[0], distributions.DISTRIBUTIONS_SCHEMA)
    assert dists["kind"].value_counts().to_dict() == {"realistic": 140, "extreme": 14}
    sizes = read_table(wd / targets[1], vim.SPLIT_SIZES_SCHEMA)
    assert len(sizes) == 154
    summary = json.loads((wd / targets[2]).read_text())
    assert summary["distributions"] == {"rows": 154, "extreme": 14, "realistic": 140}
    # The pipeline's summary agrees with docs/data.md row by row.
    docs = docs_block((ROOT / "docs" / "data.md").read_text(encoding="utf-8"))
    for line in render_table(summary).splitlines()[2:]:
        assert line in docs
    assert len(read_table(wd / targets[3], benchmarks.PROMPTS_SCHEMA)) == 520
