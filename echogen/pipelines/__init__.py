"""Inference pipelines: trained models applied to datasets (``ef_prediction``: EF of real or
generated videos, with the EchoNet-style report)."""
