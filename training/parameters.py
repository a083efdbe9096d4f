"""What a person chooses for one run: the DAG's trigger params, or the CLI's options for one grid point.

One frozen type, checked when it is made: the start task, the training operator, the CLI, the
estimate and the spec all take it as it is. The plan-independent rules (ranges, types) are checked
in `__post_init__`; the two that need the plan (the budget is one of its budgets, the models are in
the tier) are `budget_of()` and `from_trigger()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from training.plan import Budget, ParamError, Plan, Tier, closest, max_steps_problem, seed_problem


@dataclass(frozen=True)
class RunParameters:
    budget: str = "full"  # a budget of the plan
    dataset: str | None = None  # a hub id or a local folder; None: the plan's
    models: tuple[str, ...] = ()  # the tier's models to train; () outside a tier run (the CLI)
    max_steps: int | None = None  # a step cap that only shortens a run; None: the budget's, if any
    seed: int | None = None  # None: the plan's
    pruning: bool | None = None  # None: the tier's plan setting
    reuse_results: bool = False  # copy an earlier run's result for the same experiment key
    max_gpu_hours: float | None = None  # the budget gate; None: the tier's plan setting

    def __post_init__(self) -> None:
        if isinstance(self.models, list):
            object.__setattr__(self, "models", tuple(self.models))  # as the trigger form sends them
        if not isinstance(self.budget, str) or not self.budget:
            raise ParamError("budget", self.budget, "must be the name of a budget of the plan")
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset.strip()):
            raise ParamError("dataset", self.dataset, "a hub id or a local folder, or empty for the plan's dataset")
        if not isinstance(self.models, tuple) or not all(isinstance(m, str) for m in self.models):
            raise ParamError("models", self.models, "must be a list of the tier's model ids")
        if self.max_steps is not None and (problem := max_steps_problem(self.max_steps)):
            raise ParamError("max_steps", self.max_steps, problem)
        if self.seed is not None and (problem := seed_problem(self.seed)):
            raise ParamError("seed", self.seed, problem)
        if self.pruning is not None and not isinstance(self.pruning, bool):
            raise ParamError("pruning", self.pruning, "must be true, false, or empty for the plan's setting")
        if not isinstance(self.reuse_results, bool):
            raise ParamError("reuse_results", self.reuse_results, "must be true or false")
        cap = self.max_gpu_hours
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0):
            raise ParamError("max_gpu_hours", cap, "must be a number above 0, or empty for the plan's setting")

    @classmethod
    def from_trigger(cls, params: Mapping[str, Any], plan: Plan, tier: str) -> RunParameters:
        """A tier run's params (the trigger form's names), checked against the plan: every key is a
        param of the DAG (Airflow passes any key of the trigger's JSON through), the budget is one of
        the plan's, and the models are at least one of the tier's."""
        names = [field.name for field in fields(cls)]
        for key in sorted(set(params) - set(names)):
            hint = closest(key, names)
            raise ParamError(key, params[key], "not a param of this DAG, which would ignore it"
                             + (f" ({hint})" if hint.startswith("did you mean") else "")
                             + f"; its params are {', '.join(names)}")
        run = cls(**{name: params[name] for name in names if name in params})
        run.budget_of(plan)
        models = plan.tiers[tier].models
        if not run.models:
            raise ParamError("models", list(run.models), f"choose at least one of {list(models)}")
        for model_id in run.models:
            if model_id not in models:
                raise ParamError("models", model_id, f"not a model of the {tier} tier {list(models)}")
        return run

    def budget_of(self, plan: Plan) -> Budget:
        """The plan's budget of this name; a ParamError naming the closest when there is none."""
        if self.budget not in plan.budgets:
            raise ParamError("budget", self.budget, f"not a budget of the plan; {closest(self.budget, plan.budgets)}")
        return plan.budgets[self.budget]

    def dataset_source(self, plan: Plan) -> str:
        return self.dataset or plan.dataset.source

    def step_cap(self, plan: Plan) -> int | None:
        """The tighter of the budget's step cap and this run's; None when neither has one."""
        return min(filter(None, (self.budget_of(plan).max_steps, self.max_steps)), default=None)

    def gpu_hours_cap(self, tier: Tier) -> float | None:
        return float(self.max_gpu_hours) if self.max_gpu_hours is not None else tier.max_gpu_hours
