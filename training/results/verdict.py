"""Whether a sweep run succeeded: every selected model's every grid point recorded a result, and
each of them left a usable model. The final task of a tier DAG applies this after the report."""

from __future__ import annotations

from training.results.record import StoredExperiment


class SweepRunFailed(RuntimeError):
    def __init__(self, succeeded: int, expected: int, missing: int, problems: list[str]):
        self.succeeded, self.expected, self.missing, self.problems = succeeded, expected, missing, problems
        super().__init__(f"{succeeded} of {expected} experiments succeeded"
                         + (f"; {missing} recorded no result" if missing > 0 else "")
                         + "".join(f"\n  {line}" for line in problems))


def check_run(records: list[StoredExperiment], expected_count: int) -> int:
    """The number of experiments that succeeded; raises SweepRunFailed with one line per
    experiment that did not, and the count of those that recorded nothing."""
    succeeded = [r for r in records if r.status == "finished" and r.succeeded]
    problems = [f"{r.model_id} lr={r.learning_rate:g} bs={r.batch_size} ep={r.num_epochs} "
                f"wd={r.weight_decay:g}: {r.stop_reason or r.status}" + (f" ({r.error})" if r.error else "")
                for r in records if r not in succeeded]
    missing = max(expected_count - len(records), 0)
    if problems or missing:
        raise SweepRunFailed(len(succeeded), expected_count, missing, problems)
    return len(succeeded)
