"""Fine-tuning sweep for code-understanding models: plan, data, training, results and report.

Plain Python with no Airflow import; heavy libraries (torch, transformers) load only where a run needs them.
"""
