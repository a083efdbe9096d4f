"""Validation of the plan file: every key known (a misspelt one names the closest), every number
finite and in range, the version checked; the first problem raises a PlanError naming the file,
the field and the value."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

from croniter import croniter

from training.plan import (
    ARCHITECTURES,
    BUDGET_FIELDS,
    GRID_FIELDS,
    MAX_CONFIRM_SEEDS,
    MAX_LENGTH_CAP,
    MAX_STEPS_CAP,
    NO_SCHEDULE,
    PRIORITY_WEIGHTS,
    TIER_NAMES,
    Budget,
    DatasetSpec,
    Deployment,
    Plan,
    PlanError,
    Pruning,
    Scheduling,
    Settings,
    Tier,
    closest,
    model_id_problem,
    seed_problem,
)

PLAN_FORMAT_VERSION = 1  # the plan file's `version`: the layout this code reads
TOP_LEVEL_KEYS = ("version", "settings", "scheduling", "dataset", "budgets", "tiers", "models", "deployment")
DEPLOYMENT_KEYS = ("image", "gpu_resource", "gpus_per_task", "node_selector", "tolerations")
TOLERATION_KEYS = ("key", "operator", "value", "effect", "toleration_seconds")
SETTINGS_KEYS = ("eval_steps", "logging_steps", "metric_for_best_model", "early_stopping_patience",
                 "early_stopping_min_delta", "mixed_precision", "pin_memory", "max_length", "seed", "data_seed",
                 "confirm_seeds", "full_checkpoint_minutes", "upload_wait_minutes", "report_to")
SCHEDULING_KEYS = tuple(Scheduling.__dataclass_fields__)  # retries, ..., keep_checkpoints_of_runs
DATASET_KEYS = ("source", "text_columns", "label_column", "positive_label")
TIER_KEYS = ("priority", "schedule", "models", "gradient_checkpointing", "compile", "grid", "pruning",
             "max_gpu_hours")
PRUNING_KEYS = ("method", "reduction_factor", "min_fraction", "rungs_of", "noise_z", "keep_one_per_learning_rate")
PRUNING_METHODS = ("asha", "none")
REPORT_TO = ("none", "tensorboard")
MODEL_KEYS = ("architecture",)

class PlanValidator:
    def __init__(self, path: Path, version: str):
        self.path, self.version = path, version

    def fail(self, field_name: str, value: Any, problem: str) -> None:
        raise PlanError(self.path, field_name, value, problem)

    def section(self, raw: dict, name: str, keys: tuple[str, ...] | None = None) -> dict:
        value = raw.get(name)
        if not isinstance(value, dict):
            self.fail(name, value, "missing section" if value is None else "must be a table")
        if keys is not None:
            self.known_keys(value, keys, name)
        return value

    def known_keys(self, raw: dict, keys: tuple[str, ...], prefix: str = "") -> None:
        for key in raw:
            if key not in keys:
                self.fail(f"{prefix}.{key}" if prefix else key, raw[key], f"unknown key; {closest(key, keys)}")

    def positive(self, name: str, value: Any, kind: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            self.fail(name, value, f"must be a {kind.__name__}")
        if not math.isfinite(value):
            self.fail(name, value, "must be a finite number")
        if value <= 0:
            self.fail(name, value, "must be positive")
        return kind(value)

    def plan(self, raw: dict) -> Plan:
        self.known_keys(raw, TOP_LEVEL_KEYS)
        if type(raw.get("version")) is not int or raw.get("version") != PLAN_FORMAT_VERSION:
            self.fail("version", raw.get("version"), f"this code reads plan files of version {PLAN_FORMAT_VERSION}")
        architectures = self.architectures(self.section(raw, "models"))
        tiers_raw = self.section(raw, "tiers")
        for name in tiers_raw:
            if name not in TIER_NAMES:
                self.fail(f"tiers.{name}", name, f"unknown tier; {closest(name, TIER_NAMES)}")
        for name in TIER_NAMES:
            if name not in tiers_raw:
                self.fail(f"tiers.{name}", None, "missing tier")
        tiers = {name: self.tier(name, tiers_raw[name], architectures) for name in TIER_NAMES}
        seen: dict[str, str] = {}
        for tier in tiers.values():
            for model_id in tier.models:
                if model_id in seen:
                    self.fail(f"tiers.{tier.name}.models", model_id, f"already in tier {seen[model_id]!r}")
                seen[model_id] = tier.name
        budgets = {name: self.budget(name, value) for name, value in self.section(raw, "budgets").items()}
        if "full" not in budgets:
            self.fail("budgets.full", None, "missing budget (the plan as written)")
        return Plan(str(self.path), self.version, self.settings(self.section(raw, "settings", SETTINGS_KEYS)),
                    self.scheduling(self.section(raw, "scheduling", SCHEDULING_KEYS)),
                    self.dataset(self.section(raw, "dataset", DATASET_KEYS)), budgets, tiers, architectures,
                    self.deployment(raw.get("deployment", {})))

    def deployment(self, raw) -> Deployment:
        if not isinstance(raw, dict):
            self.fail("deployment", raw, "must be a table")
        self.known_keys(raw, DEPLOYMENT_KEYS, "deployment")
        for name in ("image", "gpu_resource"):
            if name in raw and (not isinstance(raw[name], str) or not raw[name].strip()):
                self.fail(f"deployment.{name}", raw[name], "must be a non-empty string")
        gpus = self.whole("deployment.gpus_per_task", raw.get("gpus_per_task", Deployment.gpus_per_task), 0)
        selector = raw.get("node_selector", {})
        if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
            self.fail("deployment.node_selector", selector, "must be a table of label = \"value\"")
        tolerations = raw.get("tolerations", [])
        if not isinstance(tolerations, list) or not all(isinstance(t, dict) for t in tolerations):
            self.fail("deployment.tolerations", tolerations, "must be a list of tables (key, operator, value, effect)")
        for index, toleration in enumerate(tolerations):
            self.known_keys(toleration, TOLERATION_KEYS, f"deployment.tolerations[{index}]")
        return Deployment(raw.get("image"), raw.get("gpu_resource", Deployment.gpu_resource), gpus,
                          tuple(sorted(selector.items())), tuple(tuple(sorted(t.items())) for t in tolerations))

    def architectures(self, raw: dict) -> dict[str, str]:
        for model_id, entry in raw.items():
            if problem := model_id_problem(model_id):
                self.fail(f"models.{model_id}", model_id, problem)
            if isinstance(entry, dict):
                self.known_keys(entry, MODEL_KEYS, f"models.{model_id}")
            if not isinstance(entry, dict) or entry.get("architecture") not in ARCHITECTURES:
                self.fail(f"models.{model_id}.architecture", (entry or {}).get("architecture"),
                          f"must be one of {list(ARCHITECTURES)}")
        return {model_id: entry["architecture"] for model_id, entry in raw.items()}

    def settings(self, raw: dict) -> Settings:
        values = {}
        for name in ("eval_steps", "logging_steps", "early_stopping_patience", "max_length"):
            values[name] = self.positive(f"settings.{name}", raw.get(name), int)
        self.bounded("settings.max_length", values["max_length"], MAX_LENGTH_CAP)
        if problem := seed_problem(raw.get("seed")):
            self.fail("settings.seed", raw.get("seed"), problem)
        values["seed"] = raw["seed"]
        data_seed = raw.get("data_seed", raw["seed"])  # a plan without it samples as before: with the seed
        if problem := seed_problem(data_seed):
            self.fail("settings.data_seed", data_seed, problem)
        values["data_seed"] = data_seed
        values["early_stopping_min_delta"] = self.positive(
            "settings.early_stopping_min_delta", raw.get("early_stopping_min_delta"), float)
        if raw.get("metric_for_best_model") != "f1":
            self.fail("settings.metric_for_best_model", raw.get("metric_for_best_model"), "only 'f1' is supported")
        for name in ("mixed_precision", "pin_memory"):
            self.boolean(f"settings.{name}", raw.get(name))
        confirm_seeds = raw.get("confirm_seeds", 0)
        if isinstance(confirm_seeds, bool) or not isinstance(confirm_seeds, int) \
                or not 0 <= confirm_seeds <= MAX_CONFIRM_SEEDS:
            self.fail("settings.confirm_seeds", confirm_seeds,
                      f"must be a whole number from 0 (off) to {MAX_CONFIRM_SEEDS}")
        values["confirm_seeds"] = confirm_seeds
        values["full_checkpoint_minutes"] = self.non_negative(
            "settings.full_checkpoint_minutes", raw.get("full_checkpoint_minutes", Settings.full_checkpoint_minutes),
            " (minutes; 0: the full state at every evaluation)")
        values["report_to"] = self.one_of("settings.report_to", raw.get("report_to", Settings.report_to), REPORT_TO,
                                          " (mlflow is not supported)")
        values["upload_wait_minutes"] = self.non_negative(
            "settings.upload_wait_minutes", raw.get("upload_wait_minutes", Settings.upload_wait_minutes))
        return Settings(metric_for_best_model="f1", mixed_precision=raw["mixed_precision"],
                        pin_memory=raw["pin_memory"], **values)

    def scheduling(self, raw: dict) -> Scheduling:
        start_date = raw.get("start_date")
        if not isinstance(start_date, date) or isinstance(start_date, datetime):
            self.fail("scheduling.start_date", start_date, "must be a date, e.g. 2026-01-01 (no quotes)")
        return Scheduling(self.whole("scheduling.retries", raw.get("retries"), 0),
                          self.positive("scheduling.retry_delay_seconds", raw.get("retry_delay_seconds"), int),
                          start_date, self.positive("scheduling.late_start_tolerance_minutes",
                                                    raw.get("late_start_tolerance_minutes"), int),
                          self.whole("scheduling.keep_checkpoints_of_runs", raw.get("keep_checkpoints_of_runs", 0), 0))

    def dataset(self, raw: dict) -> DatasetSpec:
        columns = raw.get("text_columns")
        if not isinstance(columns, list) or len(columns) not in (1, 2) \
                or not all(isinstance(c, str) and c for c in columns) or len(set(columns)) != len(columns):
            self.fail("dataset.text_columns", columns,
                      "must list one column (single snippet) or two different ones (a pair), by name")
        for name in ("source", "label_column"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                self.fail(f"dataset.{name}", raw.get(name), "must be a non-empty string")
        positive = raw.get("positive_label")
        if positive is not None and type(positive) not in (str, int, bool):
            self.fail("dataset.positive_label", positive, "must be a string, an integer or a boolean")
        return DatasetSpec(raw["source"], tuple(columns), raw["label_column"], positive)

    def budget(self, name: str, raw: dict) -> Budget:
        if not isinstance(raw, dict):
            self.fail(f"budgets.{name}", raw, "must be a table")
        self.known_keys(raw, BUDGET_FIELDS, f"budgets.{name}")
        values = {key: self.positive(f"budgets.{name}.{key}", value, float if key == "learning_rate_scale" else int)
                  for key, value in raw.items()}
        for key, cap in (("max_length", MAX_LENGTH_CAP), ("max_steps", MAX_STEPS_CAP)):
            if key in values:
                self.bounded(f"budgets.{name}.{key}", values[key], cap)
        return Budget(name, **values)

    def bounded(self, name: str, value: int, cap: int) -> None:
        if value > cap:
            self.fail(name, value, f"must be at most {cap:,}")

    def tier(self, name: str, raw: dict, architectures: dict[str, str]) -> Tier:
        prefix = f"tiers.{name}"
        if not isinstance(raw, dict):
            self.fail(prefix, raw, "must be a table")
        self.known_keys(raw, TIER_KEYS, prefix)
        self.one_of(f"{prefix}.priority", raw.get("priority"), tuple(PRIORITY_WEIGHTS))
        models = raw.get("models")
        if not isinstance(models, list) or not models:
            self.fail(f"{prefix}.models", models, "must be a non-empty list of model ids")
        for model_id in models:
            if model_id not in architectures:
                self.fail(f"{prefix}.models", model_id, "unknown model; add it to the [models] table first")
        if len(set(models)) != len(models):
            self.fail(f"{prefix}.models", models, "duplicated model")
        checkpointing = raw.get("gradient_checkpointing")
        if not (isinstance(checkpointing, bool) or checkpointing == "auto"):
            self.fail(f"{prefix}.gradient_checkpointing", checkpointing,
                      'must be true, false or "auto" (off until a CUDA out-of-memory, then on before the batch is '
                      "halved)")
        grid_raw = raw.get("grid")
        if not isinstance(grid_raw, dict):
            self.fail(f"{prefix}.grid", grid_raw, "missing grid")
        self.known_keys(grid_raw, GRID_FIELDS, f"{prefix}.grid")
        grid = {key: self.grid_values(f"{prefix}.grid.{key}", grid_raw.get(key), key) for key in GRID_FIELDS}
        schedule = raw.get("schedule")
        if schedule == NO_SCHEDULE:
            schedule = None
        elif not isinstance(schedule, str) or not croniter.is_valid(schedule):
            self.fail(f"{prefix}.schedule", schedule,
                      f"must be a cron expression, e.g. \"0 2 * * *\", or \"{NO_SCHEDULE}\" (triggered only)")
        compiled = raw.get("compile", False)
        if not (isinstance(compiled, bool) or compiled == "auto"):
            self.fail(f"{prefix}.compile", compiled, 'must be true, false or "auto" (compiled on CUDA only)')
        if (max_gpu_hours := raw.get("max_gpu_hours")) is not None:
            max_gpu_hours = self.positive(f"{prefix}.max_gpu_hours", max_gpu_hours, float)
        return Tier(name, raw["priority"], tuple(models), raw["gradient_checkpointing"], schedule, grid,
                    self.pruning(f"{prefix}.pruning", raw.get("pruning")), max_gpu_hours, compiled)

    def pruning(self, name: str, raw: Any) -> Pruning | None:
        """`pruning = { method = "asha", reduction_factor = 3, ... }`; absent or method "none": off."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.fail(name, raw, 'must be a table, e.g. { method = "asha", reduction_factor = 3, min_fraction = 0.1 }')
        self.known_keys(raw, PRUNING_KEYS, name)
        method = self.one_of(f"{name}.method", raw.get("method", "asha"), PRUNING_METHODS)
        if method == "none":
            return None
        factor = self.whole(f"{name}.reduction_factor", raw.get("reduction_factor", 3), 2)
        if (fraction := self.positive(f"{name}.min_fraction", raw.get("min_fraction", 0.1), float)) >= 1:
            self.fail(f"{name}.min_fraction", fraction, "must be below 1 (a fraction of a planned run)")
        rungs_of = self.one_of(f"{name}.rungs_of", raw.get("rungs_of", Pruning.rungs_of), ("grid", "own"),
                               " (of the largest planned run, or of each run's own)")
        noise_z = self.non_negative(f"{name}.noise_z", raw.get("noise_z", Pruning.noise_z))
        keep = self.boolean(f"{name}.keep_one_per_learning_rate", raw.get("keep_one_per_learning_rate", False))
        return Pruning(method, factor, fraction, rungs_of, noise_z, keep)

    def grid_values(self, name: str, values: Any, key: str) -> tuple:
        if not isinstance(values, list) or not values:
            self.fail(name, values, "must be a non-empty list")
        kind = float if key in ("learning_rate", "weight_decay") else int
        if key == "weight_decay":  # zero weight decay is a legitimate grid value
            checked = [self.non_negative(name, value) for value in values]
        else:
            checked = [self.positive(name, value, kind) for value in values]
        if len(set(checked)) != len(checked):
            self.fail(name, values, "duplicated value")
        return tuple(checked)

    def one_of(self, name: str, value: Any, choices: tuple, why: str = "") -> Any:
        if value not in choices:
            self.fail(name, value, f"must be one of {list(choices)}{why}")
        return value

    def whole(self, name: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(name, value, f"must be a whole number >= {minimum}")
        return value

    def boolean(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            self.fail(name, value, "must be true or false")
        return value

    def non_negative(self, name: str, value: Any, why: str = "") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            self.fail(name, value, f"must be a finite number >= 0{why}")
        return float(value)
