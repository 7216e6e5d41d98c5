"""Shared by the dialogue tests: the model's grid, a small scene annotation and a plan's question finder."""

from __future__ import annotations

from live_ros.data.annotations import Event, VideoAnnotation

FPS = 2.0


def on_grid(t: float, fps: float = FPS) -> bool:
    return abs(t * fps - round(t * fps)) < 1e-6


def scene_annotation() -> VideoAnnotation:
    return VideoAnnotation(
        "scene1",
        30.0,
        events=[
            Event(3.2, "appears", "cat", "The cat appears."),
            Event(
                6.0,
                "moves",
                "cat",
                "The cat moves to the left.",
                end=7.3,
                end_text="The cat stops.",
                meta={"direction": "to the left"},
            ),
            Event(10.3, "appears", "rocket", "The rocket appears."),
            Event(15.0, "leaves", "cat", "The cat leaves."),
            Event(22.1, "leaves", "rocket", "The rocket leaves."),
        ],
        source="world",
        domain="scene",
    )


def question(plan: dict, mode: str, **match) -> dict:
    for q in plan["questions"]:
        if q["mode"] == mode and all(q.get("target", {}) and q["target"].get(k) == v for k, v in match.items()):
            return q
    raise AssertionError(f"no {mode} question {match} in the plan")
