"""One shape for what a run produces: the typed result, its stop reasons, the `experiments`
table the migrations build, the result file and the report rows must agree. Adding a field to
ExperimentResult without a migration (or the reverse) fails here."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from tests.training.fixtures import result_record
from training.results.record import COLUMNS, STORE_COLUMNS, ExperimentResult, StopReason, StoredExperiment
from training.results.store import record_experiment, run_experiments


def table_columns(url: str) -> set[str]:
    with sa.create_engine(url).connect() as connection:
        return set(connection.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'experiments' "
            "AND table_schema = 'public'")).scalars())


def test_the_table_has_exactly_the_result_columns(fresh_database):
    assert table_columns(fresh_database) == set(COLUMNS) | set(STORE_COLUMNS)


def test_the_stop_reason_check_lists_exactly_the_enum(fresh_database):
    with sa.create_engine(fresh_database).connect() as connection:
        definitions = connection.execute(sa.text(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'experiments'::regclass "
            "AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%stop_reason = ANY%'")).scalars().all()
    assert len(definitions) == 1, definitions
    assert set(re.findall(r"'(\w+)'::text", definitions[0])) == {reason.value for reason in StopReason}


def test_a_result_survives_the_file_and_the_table_unchanged(fresh_database):
    result = ExperimentResult.from_dict(result_record(stop_reason="completed"))
    assert ExperimentResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result  # the file
    record_experiment(fresh_database, result)
    stored = run_experiments(fresh_database, "sweep_small", "run-1")[0]
    assert isinstance(stored, StoredExperiment) and stored.status == "finished"
    as_read = {name: getattr(stored, name) for name in COLUMNS if name not in ("started_at", "finished_at")}
    assert as_read == {name: getattr(result, name) for name in as_read}  # every column came back
    assert stored.stop_reason is StopReason.COMPLETED
