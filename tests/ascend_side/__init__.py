"""Helpers run by the MindSpore interpreter (.venv-ascend) on behalf of tests/test_ascend_port.py."""
