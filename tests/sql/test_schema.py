"""The results schema on a real Postgres: migrations, constraints, idempotent writes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.training.fixtures import result_record
from training import database
from training.results import record_experiment, run_experiments


def test_migrations_apply_from_empty_once(postgres):
    url = database.ensure_database(postgres, "t_migrations_once")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS experiments, schema_migrations"))
    every_migration = sorted(path.stem for path in database.MIGRATIONS_DIR.glob("*.sql"))
    assert every_migration[:2] == ["001_experiments", "002_experiment_accounting"]
    assert database.migrate(url) == every_migration  # in number order
    assert database.migrate(url) == []  # idempotent
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM schema_migrations")).scalar() == len(every_migration)
    engine.dispose()


def test_a_rerecorded_experiment_updates_its_row(fresh_database):
    record_experiment(fresh_database, result_record(test_f1=0.5, stop_reason="failed"))
    record_experiment(fresh_database, result_record(test_f1=0.9))
    rows = run_experiments(fresh_database, "sweep_small", "run-1")
    assert len(rows) == 1
    assert (rows[0]["test_f1"], rows[0]["stop_reason"]) == (0.9, "early_stopped")
    assert rows[0]["eval_points"][1] == {"step": 200, "f1": 0.8}


def test_unknown_stop_reason_is_refused(fresh_database):
    with pytest.raises(sa.exc.IntegrityError, match="stop_reason"):
        record_experiment(fresh_database, result_record(stop_reason="exploded"))


def test_incomplete_record_is_refused_before_the_database(fresh_database):
    record = result_record()
    del record["model_id"]
    with pytest.raises(ValueError, match="model_id"):
        record_experiment(fresh_database, record)
