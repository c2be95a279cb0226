"""Parses `data.source` once, so that every module agrees on what a source string means."""

from __future__ import annotations

import dataclasses

KINDS = ("tfds", "folder", "digits", "synthetic")


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    kind: str  # one of KINDS
    name: str = ""  # tfds: '<name>[:<version>]' as tfds.builder takes it
    path: str = ""  # folder: the ImageFolder root


def parse_source(source: str) -> SourceSpec:
    """`tfds:<name>[:<version>]` | `folder:<path>` | `digits` | `synthetic`."""
    kind, _, rest = source.partition(":")
    if kind == "tfds" and rest:
        return SourceSpec("tfds", name=rest)
    if kind == "folder" and rest:
        return SourceSpec("folder", path=rest)
    if source in ("digits", "synthetic"):
        return SourceSpec(source)
    raise ValueError(
        f"data.source={source!r} is not one of tfds:<name>[:<version>], folder:<path>, digits, synthetic"
    )
