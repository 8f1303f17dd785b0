"""Evaluation: benchmark readers, metrics and report tables. Pure (no torch, no Qt)."""
