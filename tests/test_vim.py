"""VIM stage-1/stage-2 examples, argument scores, templates and the ICL prompt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from paths import DEMO, PROMPTS, shared

from valueharms import VALUES
from valueharms.data.vim import (
    PVQ_OPTIONS,
    TEMPLATE_FILES,
    VIM_SCHEMA,
    argument_scores,
    default_template_paths,
    icl_system_prompt,
    importance_words,
    load_templates,
    pvq_options_text,
    read_touche,
    stage1_examples,
    stage2_examples,
    stochastic_round,
)
from valueharms.io import read_table, write_table

# Minimal templates whose output is easy to assert on.
T = {
    "stage1_prompt": "Q: {conclusion}",
    "stage1_prompt_positive": "P: {conclusion}",
    "stage1_prompt_negative": "N: {conclusion}",
    "stage1_positive": "would: I {agree} because {premise}",
    "stage1_negative": "would not: I {agree} because {premise}",
    "stage2_prompt": "{options} | {statement}",
    "stage2_answer": "{value}={importance}={score}",
}


def target(**scores: float) -> dict[str, float]:
    t = dict.fromkeys(VALUES, 1.0)
    t.update({k.replace("_", "-"): float(v) for k, v in scores.items()})
    return t


def plain(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with None for missing, so frames compare across string dtypes."""
    return df.astype(object).where(df.notna(), None)


def args_frame(labels: list[list[str]], stances: list[str] | None = None) -> pd.DataFrame:
    n = len(labels)
    stances = stances or ["in favor of"] * n
    df = pd.DataFrame(
        {
            "arg_id": [str(i) for i in range(n)],
            "conclusion": [f"c{i}" for i in range(n)],
            "stance": stances,
            "premise": [f"p{i}" for i in range(n)],
        }
    )
    for v in VALUES:
        df[v] = [int(v in labs) for labs in labels]
    return df


# --- reading -------------------------------------------------------------------------


def test_read_touche_demo_layouts():
    full = read_touche(DEMO / "valueEval_10.csv")
    assert len(full) == 48
    assert list(full.columns) == ["arg_id", "conclusion", "stance", "premise", *VALUES]
    assert full["arg_id"].tolist() == [str(i) for i in range(48)]
    assert all(full[v].dtype == "int64" for v in VALUES)
    assert full[list(VALUES)].sum().min() >= 3  # every value labelled at least 3 times
    train = read_touche(DEMO / "value_split_train.csv")
    valid = read_touche(DEMO / "value_split_valid.csv")
    assert len(train) == 24 and len(valid) == 8
    assert set(train["arg_id"]).isdisjoint(valid["arg_id"])
    # The split files are rows of the full file, ids included.
    merged = train.merge(full, on="arg_id", suffixes=("", "_full"))
    assert (merged["premise"] == merged["premise_full"]).all()


def test_read_touche_shared():
    full = read_touche(shared("valueEval_10.csv"))
    assert len(full) == 7374 and full[list(VALUES)].to_numpy().sum(axis=1).min() >= 1
    train = read_touche(shared("argument_generation/value_split/train.csv"))
    assert len(train) == 5899 and train.loc[0, "arg_id"] == "3519"


# --- scores --------------------------------------------------------------------------


def test_argument_scores_min_mean_max():
    args = args_frame([["Achievement", "Universalism"], ["Benevolence"], []])
    t = target(Achievement=2, Universalism=5, Benevolence=4)
    mn = argument_scores(args, t, "min")
    me = argument_scores(args, t, "mean")
    mx = argument_scores(args, t, "max")
    assert mn.tolist()[:2] == [2.0, 4.0] and np.isnan(mn.iloc[2])
    assert me.tolist()[:2] == [3.5, 4.0] and np.isnan(me.iloc[2])
    assert mx.tolist()[:2] == [5.0, 4.0] and np.isnan(mx.iloc[2])
    with pytest.raises(ValueError):
        argument_scores(args, t, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        argument_scores(args, {**t, "Power": 7.0})


# --- stage 1 -------------------------------------------------------------------------


def test_stage1_threshold_and_wording():
    args = args_frame(
        [["Achievement"], ["Benevolence"], ["Power"], []],
        ["in favor of", "against", "in favor of", "against"],
    )
    # Scores 3 (boundary: positive), 4 (positive), 2.9 (negative), none (left out).
    t = target(Achievement=3, Benevolence=4, Power=2.9)
    out = stage1_examples(args, t, T, threshold=3.0)
    kinds = dict(zip(out["arg_id"], out["kind"], strict=True))
    assert kinds == {"0": "positive", "1": "positive", "2": "negative"}
    row = out.set_index("arg_id").loc["1"]
    assert row["prompt"] == "P: c1" and row["completion"] == "would: I disagree because p1"
    row = out.set_index("arg_id").loc["2"]
    assert row["prompt"] == "N: c2" and row["completion"] == "would not: I agree because p2"
    assert out["value"].isna().all() and (out["stage"] == 1).all()


def test_stage1_shared_question():
    args = args_frame([["Achievement"], ["Power"]])
    out = stage1_examples(args, target(Achievement=6), T, questions="shared")
    assert out.set_index("arg_id").loc["1", "prompt"] == "Q: c1"
    assert out.set_index("arg_id").loc["0", "prompt"] == "Q: c0"


def test_stage1_split_sizes_and_determinism():
    args = args_frame([["Achievement"]] * 100)
    t = target(Achievement=6)
    out = stage1_examples(args, t, T)
    assert (out["kind"] == "positive").all()
    assert out["split"].value_counts().to_dict() == {"train": 80, "valid": 10, "test": 10}
    assert out["arg_id"].is_unique and out["example_id"].is_unique
    # Exactly METHODS' recipe: sample 0.8, then 0.5 of the remainder, random_state=42.
    train = args.sample(frac=0.8, random_state=42)
    rest = args.drop(train.index)
    valid = rest.sample(frac=0.5, random_state=42)
    assert out.loc[out["split"] == "train", "arg_id"].tolist() == train["arg_id"].tolist()
    assert out.loc[out["split"] == "valid", "arg_id"].tolist() == valid["arg_id"].tolist()
    pd.testing.assert_frame_equal(out, stage1_examples(args, t, T))
    other = stage1_examples(args, t, T, seed=7)
    assert other.loc[other["split"] == "train", "arg_id"].tolist() != train["arg_id"].tolist()


def test_stage1_splits_positive_and_negative_separately():
    args = args_frame([["Achievement"]] * 20 + [["Power"]] * 10)
    out = stage1_examples(args, target(Achievement=5), T)
    counts = out.groupby(["kind", "split"]).size().to_dict()
    assert counts == {
        ("negative", "test"): 1,
        ("negative", "train"): 8,
        ("negative", "valid"): 1,
        ("positive", "test"): 2,
        ("positive", "train"): 16,
        ("positive", "valid"): 2,
    }


def test_stage1_fits_schema(tmp_path):
    args = read_touche(DEMO / "valueEval_10.csv")
    templates = load_templates(default_template_paths(PROMPTS))
    out = stage1_examples(args, target(Universalism=6, Benevolence=5), templates)
    assert len(out) == 48
    write_table(tmp_path / "s1.parquet", out, VIM_SCHEMA)
    back = read_table(tmp_path / "s1.parquet", VIM_SCHEMA)
    pd.testing.assert_frame_equal(plain(back), plain(out))


# --- stage 2 -------------------------------------------------------------------------


def test_stochastic_round_integer_and_half():
    rng = np.random.default_rng(0)
    assert all(stochastic_round(4.0, rng) == 4 for _ in range(200))
    assert all(stochastic_round(6.0, rng) == 6 for _ in range(200))
    draws = [stochastic_round(2.5, np.random.default_rng(1)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same first draw
    rng = np.random.default_rng(123)
    many = np.array([stochastic_round(2.5, rng) for _ in range(10_000)])
    assert set(np.unique(many)) == {2, 3}
    assert abs((many == 3).mean() - 0.5) < 0.02
    rng = np.random.default_rng(123)
    again = np.array([stochastic_round(2.5, rng) for _ in range(10_000)])
    assert (many == again).all()
    rng = np.random.default_rng(5)
    quarter = np.array([stochastic_round(1.25, rng) for _ in range(10_000)])
    assert abs((quarter == 2).mean() - 0.25) < 0.02


def test_stage2_integer_target_gives_integer_answers():
    args = args_frame([["Achievement", "Universalism"], ["Power"]], ["in favor of", "against"])
    out = stage2_examples(args, args.iloc[:0], target(Achievement=4, Universalism=6), T)
    assert out["value"].tolist() == ["Achievement", "Universalism", "Power"]
    assert out["completion"].tolist() == [
        "achievement=moderately important=4",
        "universalism=very important=6",
        "power=not important at all=1",
    ]
    assert out.loc[0, "prompt"] == f"{pvq_options_text()} | I agree with c0. p0"
    assert out.loc[2, "prompt"].endswith("I disagree with c1. p1")
    assert (out["kind"] == "survey").all() and (out["split"] == "train").all()


def test_stage2_universalism_rows_and_all_values():
    train = read_touche(DEMO / "value_split_train.csv")
    valid = read_touche(DEMO / "value_split_valid.csv")
    out = stage2_examples(train, valid, target(Universalism=3.5, Power=5.5), T)
    assert len(out) == train[list(VALUES)].to_numpy().sum() + valid[list(VALUES)].to_numpy().sum()
    uni = out[out["value"] == "Universalism"]
    expect = train["Universalism"].sum() + valid["Universalism"].sum()
    assert len(uni) == expect > 0
    uni_args = set(train.loc[train["Universalism"] == 1, "arg_id"])
    assert uni_args <= set(uni.loc[uni["split"] == "train", "arg_id"])
    assert set(out["value"]) == set(VALUES)
    assert uni["completion"].str.match(r"universalism=.*=(3|4)$").all()
    assert out["example_id"].is_unique


def test_stage2_deterministic_by_seed(tmp_path):
    train = read_touche(DEMO / "value_split_train.csv")
    valid = read_touche(DEMO / "value_split_valid.csv")
    t = {v: 1.5 + 0.4 * i for i, v in enumerate(VALUES)}
    a = stage2_examples(train, valid, t, T, seed=42)
    pd.testing.assert_frame_equal(a, stage2_examples(train, valid, t, T, seed=42))
    assert not a["completion"].equals(stage2_examples(train, valid, t, T, seed=1)["completion"])
    write_table(tmp_path / "s2.parquet", a, VIM_SCHEMA)
    back = read_table(tmp_path / "s2.parquet", VIM_SCHEMA)
    pd.testing.assert_frame_equal(plain(back), plain(a))


def test_stage2_shared_uses_universalism():
    train = read_touche(shared("argument_generation/value_split/train.csv"))
    out = stage2_examples(train.head(200), train.iloc[:0], target(Universalism=6), T)
    assert (out["value"] == "Universalism").sum() == train.head(200)["Universalism"].sum() > 0


# --- templates, words, ICL -----------------------------------------------------------


def test_importance_words_and_options():
    assert importance_words(1) == "not important at all"
    assert importance_words(6) == "very important"
    assert len({importance_words(i) for i in range(1, 7)}) == 6
    with pytest.raises(ValueError):
        importance_words(0)
    assert len(PVQ_OPTIONS) == 6 and PVQ_OPTIONS[0] == "Not like me at all"
    assert pvq_options_text().startswith("1. 'Not like me at all', 2. 'Not like me'")


def test_load_templates_strips_one_newline(tmp_path):
    (tmp_path / "a.txt").write_text("hello {x}\n\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("no newline", encoding="utf-8")
    got = load_templates({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"})
    assert got == {"a": "hello {x}\n", "b": "no newline"}


def test_project_templates_format():
    templates = load_templates(default_template_paths(PROMPTS))
    assert set(templates) == set(TEMPLATE_FILES)
    fields = {"conclusion": "c", "stance": "against", "premise": "p", "agree": "disagree"}
    for key in (
        "stage1_prompt",
        "stage1_prompt_positive",
        "stage1_prompt_negative",
        "stage1_positive",
        "stage1_negative",
    ):
        templates[key].format(**fields)
    assert "disagree" in templates["stage1_positive"].format(**fields)
    s2 = templates["stage2_prompt"].format(statement="I agree with c. p", options="OPTS")
    assert "OPTS" in s2 and "I agree with c. p" in s2
    ans = templates["stage2_answer"].format(value="power", importance="important", score=5)
    assert "power" in ans and "5" in ans


def test_icl_system_prompt():
    templates = load_templates(default_template_paths(PROMPTS))
    t = target(Achievement=6, Tradition=2.5)
    text = icl_system_prompt(t, templates["icl_system"])
    assert "- Achievement: 6.00 out of 6, very important" in text
    assert "- Tradition: 2.50 out of 6, slightly important" in text  # 2.5 rounds up to 3
    assert "- Power: 1.00 out of 6, not important at all" in text
    assert "{profile}" not in text
    assert icl_system_prompt(t, "{profile}").count("\n") == 9
