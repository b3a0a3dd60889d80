"""Tests of the built-in data sources and auditor.imaging."""
