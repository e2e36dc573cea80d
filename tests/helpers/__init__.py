"""What tests share, one job per module; conftest files keep only fixtures, built from these.

`tests/__init__.py` registers this package for pytest's assertion rewriting, so a failed `assert` inside a helper
reports its operands as it did when the helpers lived in conftest files.
"""
