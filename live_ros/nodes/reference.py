"""The node / parameter reference of the README, generated from the declared parameters:
``python -m live_ros.nodes.reference`` prints the Markdown tables (a test checks that the
README and config/live_ros.yaml carry every declared parameter)."""

from __future__ import annotations

import importlib

from live_ros.nodes.base import COMMON

NODES = ("video_source", "camera_subscriber", "frame_encoder", "live_llm")


def node_classes() -> dict[str, type]:
    out = {}
    for name in NODES:
        try:
            module = importlib.import_module(f"live_ros.nodes.{name}")
        except ModuleNotFoundError:
            continue
        out[name] = next(
            v
            for v in vars(module).values()
            if isinstance(v, type) and getattr(v, "PARAMS", None) and v.__module__ == module.__name__
        )
    return out


def _fmt(value) -> str:
    return f"`{value!r}`" if isinstance(value, str) else f"`{str(value).lower() if isinstance(value, bool) else value}`"


def markdown() -> str:
    lines = []
    for node, cls in node_classes().items():
        lines += [
            f"**{node}**",
            "",
            "| parameter | default | range | changes while running | description |",
            "|---|---|---|---|---|",
        ]
        for p in cls.PARAMS:
            rng = "/".join(p.choices) if p.choices else (f"{p.range[0]} .. {p.range[1]}" if p.range else "")
            lines.append(
                f"| `{p.name}` | {_fmt(p.default)} | {rng} | {'yes' if p.dynamic else 'no'} | {p.description} |"
            )
        lines.append("")
    lines += ["**every node**", "", "| parameter | default | range | description |", "|---|---|---|---|"]
    for p in COMMON:
        lines.append(
            f"| `{p.name}` | {_fmt(p.default)} | {f'{p.range[0]} .. {p.range[1]}' if p.range else ''} | "
            f"{p.description} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
