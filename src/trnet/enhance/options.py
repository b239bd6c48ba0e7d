"""Back-end options given as text (`--opt KEY=VALUE` of `trnet enhance` and `trnet predict`)."""

from __future__ import annotations


def parse_options(items: list[str]) -> dict[str, object]:
    """`KEY=VALUE` strings -> keyword options; numbers and true/false are converted."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--opt {item!r}: expected KEY=VALUE")
        options[key.replace("-", "_")] = _convert(value)
    return options


def _convert(value: str) -> object:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
