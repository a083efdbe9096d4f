"""Datasets: loading a hub id or a local folder, the dataset contract, and its fingerprint."""
