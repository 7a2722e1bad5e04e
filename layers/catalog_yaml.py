"""Catalog files read as YAML 1.2, with every problem as one line naming the file and the place."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class CatalogError(ValueError):
    """A catalog file is unreadable or invalid; the message names the file and the key."""


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. In YAML 1.1 a Shapefile column called NO, or a key
    called on, silently becomes a boolean."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 - safe loader subclass
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise CatalogError(_yaml_problem(path, exc)) from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data


def _yaml_problem(path: Path, exc: yaml.YAMLError) -> str:
    """One line, `file:line:column: what`, as editors and compilers print it (PyYAML's own text
    spans several lines with a copy of the offending line)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = getattr(exc, "problem", None) or " ".join(str(exc).split())
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened is not None and opened is not mark:
        what += f" ({context} at line {opened.line + 1}, column {opened.column + 1})"
    return f"{where}: YAML syntax error: {what}"
