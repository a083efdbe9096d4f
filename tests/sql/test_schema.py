"""The results schema on a real Postgres: migrations, constraints, idempotent writes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.training.fixtures import result_record
from training.results import database
from training.results.record import ExperimentResult
from training.results.store import record_experiment, run_experiments


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
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(test_f1=0.5, stop_reason="failed")))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record(test_f1=0.9)))
    rows = run_experiments(fresh_database, "sweep_small", "run-1")
    assert len(rows) == 1
    assert (rows[0].test_f1, rows[0].stop_reason) == (0.9, "early_stopped")
    with sa.create_engine(fresh_database).connect() as connection:
        curve = connection.execute(sa.text("SELECT step, f1 FROM evaluation_points ORDER BY step")).all()
    assert [tuple(point) for point in curve] == [(100, 0.7), (200, 0.8)]


def test_unknown_stop_reason_is_refused_by_the_type_and_by_the_table(fresh_database):
    with pytest.raises(ValueError, match="exploded"):
        ExperimentResult.from_dict(result_record(stop_reason="exploded"))
    record_experiment(fresh_database, ExperimentResult.from_dict(result_record()))
    with sa.create_engine(fresh_database).begin() as connection, \
            pytest.raises(sa.exc.IntegrityError, match="stop_reason"):
        connection.execute(sa.text("UPDATE experiments SET stop_reason = 'exploded'"))


def test_incomplete_record_is_refused_before_the_database():
    record = result_record()
    del record["model_id"]
    with pytest.raises(TypeError, match="model_id"):
        ExperimentResult.from_dict(record)


def test_the_warehouse_migration_carries_existing_rows_over(postgres, tmp_path):
    """003 on a database that already holds 002-era rows: runs, attempts and curves are backfilled."""
    import shutil

    url = database.ensure_database(postgres, "t_backfill")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA IF EXISTS analytics CASCADE"))
        connection.execute(sa.text("DROP TABLE IF EXISTS evaluation_points, attempts, experiments, sweep_runs, "
                                   "schema_migrations CASCADE"))
    early = tmp_path / "migrations"
    early.mkdir()
    for path in sorted(database.MIGRATIONS_DIR.glob("00[12]_*.sql")):
        shutil.copy(path, early)
    database.migrate(url, early)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO experiments (dag_id, run_id, run_type, experiment_key, tier, model_id, model_source, "
            "is_stand_in, learning_rate, batch_size, num_epochs, weight_decay, gradient_accumulation_steps, budget, "
            "dataset_source, stop_reason, test_f1, wall_seconds, gpu_hours, eval_points, started_at) VALUES "
            "('sweep_small', 'old-run', 'manual', 'k1', 'small', 'm', 'm', false, 2e-5, 16, 3, 0.01, 1, 'full', 'd', "
            "'completed', 0.9, 3600, 1.0, '[{\"step\": 100, \"f1\": 0.8}, {\"step\": 200, \"f1\": 0.9}]', now())"))
    assert database.migrate(url) == sorted(p.stem for p in database.MIGRATIONS_DIR.glob("*.sql"))[2:]
    with engine.connect() as connection:
        run = connection.execute(sa.text("SELECT run_id, status, tier FROM sweep_runs")).one()
        assert tuple(run) == ("old-run", "success", "small")
        assert connection.execute(sa.text("SELECT step, f1 FROM evaluation_points ORDER BY step")).all() == [
            (100, 0.8), (200, 0.9)]
        attempt = connection.execute(sa.text("SELECT attempt_number, seconds, gpu_seconds FROM attempts")).one()
        assert tuple(attempt) == (1, 3600.0, 3600.0)
    engine.dispose()


def _early_migrations(tmp_path, count: int):
    import shutil

    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    for path in sorted(database.MIGRATIONS_DIR.glob("*.sql"))[:count]:
        shutil.copy(path, folder)
    return folder


def _empty_database(postgres, name: str) -> str:
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    return database.ensure_database(postgres, name)


def test_an_edited_migration_is_refused_before_anything_is_applied(postgres, tmp_path):
    url = _empty_database(postgres, "t_edited_migration")
    folder = _early_migrations(tmp_path, 2)
    assert database.migrate(url, folder) == ["001_experiments", "002_experiment_accounting"]
    edited = folder / "001_experiments.sql"
    edited.write_text(edited.read_text() + "\nALTER TABLE experiments ADD COLUMN sneaky int;\n")
    third = sorted(database.MIGRATIONS_DIR.glob("*.sql"))[2]
    (folder / third.name).write_text(third.read_text())  # 003 waits to be applied
    with pytest.raises(database.MigrationEdited, match="001_experiments.sql: changed since this database applied"):
        database.migrate(url, folder)
    with sa.create_engine(url).connect() as connection:
        versions = connection.execute(sa.text("SELECT version FROM schema_migrations ORDER BY 1")).scalars().all()
    assert versions == ["001_experiments", "002_experiment_accounting"]  # 003 was not applied


def test_versions_applied_before_checksums_get_theirs_and_stay_checked(postgres, tmp_path):
    url = _empty_database(postgres, "t_checksum_backfill")
    folder = _early_migrations(tmp_path, 2)
    database.migrate(url, folder)
    with sa.create_engine(url).begin() as connection:  # as a database migrated by the runner before checksums
        connection.execute(sa.text("UPDATE schema_migrations SET checksum = NULL"))
    assert database.migrate(url, folder) == []
    with sa.create_engine(url).connect() as connection:
        sums = dict(connection.execute(sa.text("SELECT version, checksum FROM schema_migrations")).all())
    assert sums == {path.stem: database.checksum(path) for path in folder.glob("*.sql")}


def test_a_database_behind_the_code_refuses_the_run_before_any_training(postgres, tmp_path, monkeypatch):
    from training import tasks

    url = _empty_database(postgres, "t_schema_behind")
    database.migrate(url, _early_migrations(tmp_path, 18))
    with pytest.raises(database.SchemaBehind, match=r"lacks \d+ migration\(s\) this code needs \(019_.*db migrate"):
        database.check_schema(url)
    monkeypatch.setenv("SWEEP_DATABASE_URL", url)
    with pytest.raises(tasks.CONFIGURATION_ERRORS, match="019_"):  # the first task's refusal, in its log and note
        tasks.start_decision(tier="small", params={}, run_type="manual", scheduled_for=None,
                             now=__import__("datetime").datetime.now(), dag_id="sweep_small", run_id="behind")
    database.migrate(url)
    database.check_schema(url)  # up to date: no complaint
    database.check_schema("postgresql://nobody@127.0.0.1:9/none")  # unreachable: the outage path's business
