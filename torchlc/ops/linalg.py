"""Rules for linalg ops (filled in by the coverage work; see docs/coverage.md)."""

from __future__ import annotations
