import pytest

# Before anything imports tests.helpers: their asserts explain failures like a test's own (pytest rewrites them).
pytest.register_assert_rewrite("tests.helpers")
