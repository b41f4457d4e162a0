"""Tests of ``lorentzcv.data``; ``fixtures.py`` holds reusable writers of tiny on-disk datasets."""
