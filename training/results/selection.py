"""Which experiment a sweep chooses, in one place for the report and the seed-rerun task: the
best validation F1 among the grid's successful runs (test F1 is only reported); ties go to the
cheaper configuration (fewer epochs), then the cheaper run. Seed-confirmation reruns never compete."""

from __future__ import annotations

from training.results.record import StopReason, StoredExperiment


def ranked_by_validation(experiments: list[StoredExperiment]) -> list[StoredExperiment]:
    """The grid's successful runs, best first: validation F1 selects (test F1 is only reported);
    ties go to a run that was not pruned (a pruned run is cheap only because it was cut short), then
    to the cheaper configuration (fewer epochs: under a step cap the 3- and 5-epoch cells can be the
    same run, and the 3-epoch one is what costs less without the cap), then to the cheaper run.
    Seed-confirmation reruns never compete."""
    candidates = [e for e in experiments if e.succeeded and e.confirmation_of is None]
    return sorted(candidates, key=lambda e: (e.validation_f1, e.stop_reason != StopReason.PRUNED, -e.num_epochs,
                                             -(e.gpu_hours or 0), -(e.wall_seconds or 0)), reverse=True)


def best_of(experiments: list[StoredExperiment]) -> StoredExperiment | None:
    ranked = ranked_by_validation(experiments)
    return ranked[0] if ranked else None
