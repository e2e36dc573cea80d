"""Reporting: query parsing, and reading the answers from the rollups."""
