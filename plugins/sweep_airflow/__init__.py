"""The thin Airflow side of the sweep: operators that hand work to the training package."""
