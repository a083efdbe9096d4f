"""The plan file as data: the plan exactly as written, and broken plans that name their error."""

from __future__ import annotations

import dataclasses
import re

import pytest

from training.parameters import RunParameters
from training.plan import DEFAULT_PLAN_PATH, PlanError, load_plan
from training.spec import build_spec


def test_plan_holds_the_72_runs_of_the_training_plan():
    plan = load_plan()
    runs = {model: len(tier.combinations()) for tier in plan.tiers.values() for model in tier.models}
    assert runs == {
        "microsoft/codebert-base": 8, "Salesforce/codet5-small": 8,
        "Salesforce/codet5-base": 12, "Salesforce/codet5p-220m": 12,
        "Salesforce/codet5-large": 16, "Salesforce/codet5p-770m": 16,
    }
    assert sum(runs.values()) == 72


def test_grids_and_settings_match_the_plan():
    plan = load_plan()
    small, medium, large = (plan.tiers[name] for name in ("small", "medium", "large"))
    assert small.grid == {"learning_rate": (2e-5, 5e-5), "batch_size": (16, 32), "num_epochs": (3, 5),
                          "weight_decay": (0.01,), "gradient_accumulation_steps": (1,)}
    assert medium.grid == {"learning_rate": (1e-5, 2e-5, 5e-5), "batch_size": (8, 16), "num_epochs": (3, 5),
                           "weight_decay": (0.01,), "gradient_accumulation_steps": (1,)}
    assert large.grid == {"learning_rate": (1e-5, 2e-5), "batch_size": (4, 8), "num_epochs": (3, 5),
                          "weight_decay": (0.01, 0.1), "gradient_accumulation_steps": (2,)}
    assert [t.gradient_checkpointing for t in (small, medium, large)] == [False, False, True]
    assert (small.priority, medium.priority, large.priority) == ("low", "medium", "high")
    assert len({small.schedule, medium.schedule, large.schedule}) == 3  # staggered nightly reruns
    assert small.priority_weight < medium.priority_weight < large.priority_weight
    s = plan.settings
    assert (s.eval_steps, s.logging_steps, s.metric_for_best_model) == (100, 25, "f1")
    assert (s.early_stopping_patience, s.early_stopping_min_delta) == (2, 0.001)
    assert s.mixed_precision and s.pin_memory
    assert s.full_checkpoint_minutes == 30.0


def test_combinations_are_sorted_and_unique():
    tier = load_plan().tiers["large"]
    combos = [tuple(c.as_dict().values()) for c in tier.combinations()]
    assert combos == sorted(combos)
    assert len(set(combos)) == len(combos) == 16


def broken(tmp_path, old: str, new: str):
    text = DEFAULT_PLAN_PATH.read_text()
    assert old in text, old
    path = tmp_path / "plan.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, field, value", [
    ('"microsoft/codebert-base", "Salesforce/codet5-small"]', '"microsoft/codebert-bsae", "Salesforce/codet5-small"]',
     "tiers.small.models", "microsoft/codebert-bsae"),
    ("learning_rate = [2e-5, 5e-5]", "learning_rate = []", "tiers.small.grid.learning_rate", "[]"),
    ("batch_size = [8, 16]", "batch_size = [8, 8]", "tiers.medium.grid.batch_size", "[8, 8]"),
    ("learning_rate = [1e-5, 2e-5]", "learning_rate = [-1e-5, 2e-5]", "tiers.large.grid.learning_rate", "-1e-05"),
    ("batch_size = [16, 32]", "batch_size = [0, 32]", "tiers.small.grid.batch_size", "0"),
    ("eval_steps = 100", 'eval_steps = "often"', "settings.eval_steps", "'often'"),
    ('schedule = "0 2 * * *"', 'schedule = "nightly"', "tiers.medium.schedule", "'nightly'"),
    # unknown keys at every level, named with the closest known key
    ("eval_steps = 100", "eval_step = 100", "settings.eval_step", "did you mean 'eval_steps'"),
    ('priority = "low"', 'priority = "low"\nschedul = "0 1 * * *"', "tiers.small.schedul", "did you mean 'schedule'"),
    ('label_column = "label"', 'label_colum = "label"', "dataset.label_colum", "did you mean 'label_column'"),
    ("[budgets.tiny]", "[budget.tiny]", "budget", "did you mean 'budgets'"),
    ("retries = 2", "retry = 2", "scheduling.retry", "did you mean 'retries'"),
    ('architecture = "roberta"', 'architecture = "roberta"\narchitecure = "t5"',
     'models.microsoft/codebert-base.architecure', "did you mean 'architecture'"),
    ("[tiers.small.grid]", "[tiers.small.grids]", "tiers.small.grids", "did you mean 'grid'"),
    ("[tiers.large]", "[tiers.larg]", "tiers.larg", "did you mean 'large'"),
    ("max_steps = 8", "max_step = 8", "budgets.tiny.max_step", "did you mean 'max_steps'"),
    # numbers that are not numbers
    ("learning_rate = [2e-5, 5e-5]", "learning_rate = [nan, 5e-5]", "tiers.small.grid.learning_rate", "nan"),
    ("weight_decay = [0.01, 0.1]", "weight_decay = [0.01, inf]", "tiers.large.grid.weight_decay", "inf"),
    ("early_stopping_min_delta = 0.001", "early_stopping_min_delta = nan", "settings.early_stopping_min_delta",
     "finite"),
    # the format version, scheduling and dataset values
    ("version = 1", "version = 2", "version", "2"),
    ("version = 1", "", "version", "None"),
    ("start_date = 2026-01-01", 'start_date = "2026-01-01"', "scheduling.start_date", "'2026-01-01'"),
    ("retries = 2", "retries = -1", "scheduling.retries", "-1"),
    ("keep_checkpoints_of_runs = 0", "keep_checkpoints_of_runs = 1.5", "scheduling.keep_checkpoints_of_runs",
     "must be a whole number >= 0"),
    ('label_column = "label"', 'label_column = "label"\npositive_label = [1]', "dataset.positive_label", "[1]"),
    # pruning and the budget gate
    ('priority = "low"', 'priority = "low"\npruning = { method = "hyperband" }', "tiers.small.pruning.method",
     "'hyperband'"),
    ('priority = "low"', 'priority = "low"\npruning = { reduction_factor = 1 }', "tiers.small.pruning.reduction_factor",
     "must be a whole number >= 2"),
    ('priority = "low"', 'priority = "low"\npruning = { min_fraction = 1.5 }', "tiers.small.pruning.min_fraction",
     "must be below 1"),
    ('priority = "low"', 'priority = "low"\npruning = { reduction = 3 }', "tiers.small.pruning.reduction",
     "did you mean 'reduction_factor'"),
    ('priority = "low"', 'priority = "low"\nmax_gpu_hours = -4', "tiers.small.max_gpu_hours", "must be positive"),
    # compiling and activation checkpointing
    ('priority = "low"', 'priority = "low"\ncompile = "yes"', "tiers.small.compile", 'or "auto"'),
    ("gradient_checkpointing = true", 'gradient_checkpointing = "sometimes"', "tiers.large.gradient_checkpointing",
     'or "auto"'),
    # what a save writes
    ("full_checkpoint_minutes = 30", "full_checkpoint_minutes = -5", "settings.full_checkpoint_minutes", ">= 0"),
    ("full_checkpoint_minutes = 30", 'full_checkpoint_minutes = "hourly"', "settings.full_checkpoint_minutes",
     "'hourly'"),
    # found by a tester (issue 22): one rule set with the form, and no name that leaves its folder
    ("version = 1", "version = true", "version", "True"),
    ("seed = 42", "seed = 2147483648", "settings.seed", "2,147,483,637"),
    ("seed = 42", "seed = -1", "settings.seed", "from 0"),
    ("max_length = 512 ", "max_length = 100000000 ", "settings.max_length", "at most 32,768"),
    ("max_steps = 8", "max_steps = 1000000000000", "budgets.tiny.max_steps", "at most 10,000,000"),
    ('text_columns = ["func1", "func2"]', 'text_columns = ["func1", "func1"]', "dataset.text_columns", "different"),
    ('text_columns = ["func1", "func2"]', 'text_columns = ["func1", ""]', "dataset.text_columns", "by name"),
    ('[models."microsoft/codebert-base"]', '[models."../../../../etc"]', "models.../../../../etc", "not a hub id"),
    ('[models."microsoft/codebert-base"]', '[models.""]', "models", "must be a hub id"),
    ('[models."microsoft/codebert-base"]', '[models."/srv/models/../../etc"]', "models./srv/models/../../etc",
     "plain absolute path"),
])
def test_broken_plan_names_file_field_and_value(tmp_path, old, new, field, value):
    path = broken(tmp_path, old, new)
    with pytest.raises(PlanError) as error:
        load_plan(path)
    message = str(error.value)
    assert str(path) in message
    assert re.search(rf"\b{re.escape(field)}\b", message), message
    assert value in message, message


@pytest.mark.parametrize("arguments, named", [
    ({"budget": "huge"}, "budget = 'huge': not a budget of the plan; expected one of ['demo', 'full', 'tiny']"),
    ({"budget": "tinny"}, "did you mean 'tiny'"),
    ({"max_steps": 0}, "max_steps = 0"),
    ({"max_steps": 2.5}, "max_steps = 2.5"),
    ({"seed": -3}, "seed = -3"),
    ({"seed": 2**31}, "seed = 2147483648: must be a whole number from 0 to 2,147,483,637"),
    ({"max_steps": 10**12}, "max_steps = 1000000000000: must be a whole number from 1 to 10,000,000"),
    ({"pruning": "yes"}, "pruning = 'yes': must be true, false"),
    ({"max_gpu_hours": True}, "max_gpu_hours = True: must be a number above 0"),
])
def test_a_bad_run_parameter_names_itself(arguments, named):
    """Run parameters are checked once, where they are made; the budget against the plan when used."""
    from training.plan import ParamError

    plan = load_plan()
    with pytest.raises(ParamError) as error:
        build_spec(plan, "microsoft/codebert-base", plan.tiers["small"].combinations()[0], RunParameters(**arguments))
    assert named in str(error.value)


def test_run_parameters_give_one_step_cap_to_the_spec_and_the_estimate():

    plan = load_plan()
    point = plan.tiers["small"].combinations()[0]
    assert plan.budgets["tiny"].max_steps is not None
    tiny = plan.budgets["tiny"].max_steps
    for asked, cap in ((None, tiny), (tiny + 5, tiny), (max(1, tiny - 1), max(1, tiny - 1))):
        run = RunParameters(budget="tiny", max_steps=asked)
        assert run.step_cap(plan) == cap == build_spec(plan, "microsoft/codebert-base", point, run).max_steps
    assert RunParameters(models=["a/b"]).models == ("a/b",)  # the form's list, frozen
    assert RunParameters(dataset="/data").dataset_source(plan) == "/data"
    assert RunParameters().dataset_source(plan) == plan.dataset.source


def test_a_model_outside_the_plan_names_the_closest():
    from training.plan import ParamError

    plan = load_plan()
    with pytest.raises(ParamError, match="model = 'microsoft/codebert-bsae'.*did you mean 'microsoft/codebert-base'"):
        build_spec(plan, "microsoft/codebert-bsae", plan.tiers["small"].combinations()[0])


def test_missing_tier_is_named(tmp_path):
    text = DEFAULT_PLAN_PATH.read_text()
    path = tmp_path / "plan.toml"
    path.write_text(text[:text.index("[tiers.medium]")] + text[text.index("[tiers.large]"):])
    with pytest.raises(PlanError, match=r"tiers\.medium = None: missing tier") as error:
        load_plan(path)
    assert str(path) in str(error.value)


def test_missing_plan_file_is_named(tmp_path):
    with pytest.raises(PlanError, match="plan file not found"):
        load_plan(tmp_path / "nope.toml")


def test_a_tier_can_run_only_when_triggered_and_a_budget_can_cap_time(tmp_path):
    text = DEFAULT_PLAN_PATH.read_text().replace('schedule = "0 2 * * *"', 'schedule = "none"')
    text = text.replace("[budgets.tiny]\n", "[budgets.tiny]\nmax_train_seconds = 30\n")
    path = tmp_path / "plan.toml"
    path.write_text(text)
    plan = load_plan(path)
    assert plan.tiers["medium"].schedule is None and plan.tiers["small"].schedule == "0 1 * * *"
    assert plan.budgets["tiny"].max_train_seconds == 30
    spec = build_spec(plan, "Salesforce/codet5-base", plan.tiers["medium"].combinations()[0],
                      RunParameters(budget="tiny"))
    assert spec.max_train_seconds == 30
    assert "max_train_seconds" in spec.settings_for_key()  # a time cap changes the model, so the key
    uncapped = build_spec(plan, "Salesforce/codet5-base", plan.tiers["medium"].combinations()[0],
                          RunParameters(budget="demo"))
    assert "max_train_seconds" not in uncapped.settings_for_key()  # keys recorded before the field stay valid


def test_pruning_and_the_budget_gate_are_read_per_tier(tmp_path):
    from training.plan import Pruning
    from training.spec import pruning_settings

    path = broken(tmp_path, 'priority = "low"',
                  'priority = "low"\npruning = { reduction_factor = 2 }\nmax_gpu_hours = 12.5')
    plan = load_plan(path)
    small = plan.tiers["small"]
    assert small.pruning == Pruning("asha", 2, 0.1) and small.max_gpu_hours == 12.5
    assert plan.tiers["large"].pruning is None and plan.tiers["large"].max_gpu_hours is None
    assert pruning_settings(small, None)["grid"] == [[16, 1, 3], [16, 1, 5], [32, 1, 3], [32, 1, 5]]
    assert pruning_settings(small, False) is None  # the trigger param turns it off for one run
    assert pruning_settings(plan.tiers["large"], True)["reduction_factor"] == 3  # or on, with the defaults
    spec = build_spec(plan, "microsoft/codebert-base", small.combinations()[0])
    assert spec.pruning is not None and "pruning" in spec.settings_for_key()
    rerun = build_spec(plan, "microsoft/codebert-base", small.combinations()[0], confirmation_of="abc")
    assert rerun.pruning is None  # a seed rerun measures the chosen configuration whole
    unpruned = build_spec(load_plan(), "microsoft/codebert-base", small.combinations()[0])
    assert "pruning" not in unpruned.settings_for_key()  # keys of runs without pruning are unchanged
    assert "compile" not in unpruned.settings_for_key() and unpruned.compile is False  # nor of eager runs
    # How often the full state is saved changes what a retry resumes from, never the model: not in the key.
    assert unpruned.full_checkpoint_minutes == 30.0
    assert dataclasses.replace(unpruned, full_checkpoint_minutes=0).settings_for_key() == unpruned.settings_for_key()


def test_compile_and_auto_checkpointing_are_read_per_tier(tmp_path):
    path = broken(tmp_path, "gradient_checkpointing = true", 'gradient_checkpointing = "auto"\ncompile = "auto"')
    large = load_plan(path).tiers["large"]
    assert (large.gradient_checkpointing, large.compile) == ("auto", "auto")
    spec = build_spec(load_plan(path), "Salesforce/codet5-large", large.combinations()[0])
    assert spec.compile == "auto" and spec.settings_for_key()["compile"] == "auto"


def test_seed_zero_is_a_seed_in_the_plan_as_in_the_form(tmp_path):
    plan = load_plan(broken(tmp_path, "seed = 42", "seed = 0"))
    assert plan.settings.seed == 0
    assert build_spec(plan, "microsoft/codebert-base", plan.tiers["small"].combinations()[0],
                      RunParameters(seed=0)).seed == 0


def test_every_spec_field_is_decided_for_the_key_and_recorded_keys_stay_valid():
    """A new spec field must be put in or out of the experiment key on purpose; and the keys of
    experiments already in a results database do not move when the code is reorganised."""
    from training.engine.prepare import experiment_key
    from training.plan import LEGACY_PRUNING
    from training.spec import KEY_FIELDS, KEY_FIELDS_WHEN_CAPPED, KEY_FIELDS_WHEN_SET, NOT_IN_KEY, ExperimentSpec

    lists = [*KEY_FIELDS, *KEY_FIELDS_WHEN_SET, *KEY_FIELDS_WHEN_CAPPED, *NOT_IN_KEY]
    assert sorted(lists) == sorted(field.name for field in dataclasses.fields(ExperimentSpec))
    assert len(lists) == len(set(lists))
    plan = load_plan()
    plain = build_spec(plan, "microsoft/codebert-base", plan.tiers["small"].combinations()[0])
    assert experiment_key(plain, "fp") == "81fe9c77d15ac204"  # recorded before the allow-list existed
    capped = build_spec(plan, "Salesforce/codet5-large", plan.tiers["large"].combinations()[1],
                        RunParameters(budget="tiny", dataset="/x", max_steps=5, seed=7, pruning=True))
    capped = dataclasses.replace(capped, compile="auto", max_train_seconds=5, learning_rate_scale=2.0,
                                 max_train_samples=None, max_eval_samples=None)
    # pruned under the rules before rungs_of and the safeguards (recorded without them): the same key
    legacy = dataclasses.replace(capped, pruning={k: v for k, v in capped.pruning.items() if k not in LEGACY_PRUNING})
    assert experiment_key(legacy, "fp") == "1cb175c291440d40"
    assert experiment_key(capped, "fp") != "1cb175c291440d40"  # the plan's rules now: another pruned run
    assert experiment_key(dataclasses.replace(plain, run_id="other", budget="demo", database_url="x"), "fp") == \
        "81fe9c77d15ac204"
