"""Development tooling, not part of the product: Airflow on one machine for this checkout
(`make demo`, `make airflow`, the multi-process tests)."""
