"""The user's ``config.py``, written from :class:`~fleetmarl.config.Config`: the one source of defaults.

The guide has users edit a root ``config.py`` of UPPERCASE constants. Hand-keeping that file beside the
dataclass would give every default and description two homes; instead ``fleetmarl init-config`` writes
it from the dataclass (values, the field docstrings as comments, and the dataclass's section titles),
``fleetmarl train --help-config`` prints the same text, and a test checks the repository's copy is
what the command writes.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from fleetmarl.config import Config, field_docs

HEADER = '''"""fleetmarl configuration: edit these values, then run `python main.py`.

Every UPPERCASE name here is a config key. Override one for a single run without editing this file:
    python main.py --set NUM_EPISODES=400 --set ENVIRONMENT_TYPE=simplified
Other files work too: `--config my.py` (same format) or `--config my.toml` (same keys).
Written by `fleetmarl init-config` from fleetmarl.Config (the defaults and their meaning live there);
a file that sets only some keys works too: the others keep their defaults.
"""
'''
_SECTION = re.compile(r"^\s*# -{10,}\s*(?P<title>.+?)\s*$")
_FIELD = re.compile(r"^\s*(?P<name>[A-Z][A-Z0-9_]*)\s*:")


def sections() -> list[tuple[str, list[str]]]:
    """The dataclass's section titles (its ``# ----- Title`` comments) with the keys under each, in order."""
    source = Path(__file__).with_name("config.py").read_text(encoding="utf-8")
    body = source[source.index("class Config"):]
    known = {f.name for f in fields(Config)}
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if match := _SECTION.match(line):
            out.append((match["title"], []))
        elif (match := _FIELD.match(line)) and match["name"] in known and out:
            out[-1][1].append(match["name"])
    return [(title, keys) for title, keys in out if keys]


def render_config_file(config: Config | None = None) -> str:
    """A complete ``config.py``: every key with its value in ``config`` (default: the defaults) and meaning."""
    config = config or Config()
    docs = field_docs()
    lines = [HEADER]
    for title, keys in sections():
        lines.append(f"\n# {title}")
        lines.extend(f"{key} = {getattr(config, key)!r}  # {' '.join(docs.get(key, '').split())}" for key in keys)
    return "\n".join(lines) + "\n"
