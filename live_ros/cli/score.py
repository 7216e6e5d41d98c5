"""``score``: the words of saved responses checked against an annotation, offline (no
model, no graph), with the scorer evaluate-online and replay-eval use
(live_ros/evaluation/truth.py)."""

from __future__ import annotations

import json
from pathlib import Path

from live_ros.cli.evaluate import _err, _nouns


def add(sub) -> None:
    add_score(sub)


def add_score(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score the words of saved responses against an annotation (offline: no model, no graph)",
        description="Check what was said, offline: the final responses in RESPONSES (the JSON of "
        "`live-ros demo --json`, a replay-eval report.json, or a list of {time or video_time, text, "
        "kind, query_id, proactive}) against an annotation (live_ros.annotation/1), with the scorer "
        "evaluate-online and replay-eval use (live_ros/evaluation/truth.py): per event the response "
        "within [-0.5, +1.5] s, right object, right event; per response matched, spurious, "
        "hallucinated, repeated. Without --annotations it lists the responses and says it cannot score.",
    )
    p.add_argument("responses", metavar="RESPONSES_JSON")
    p.add_argument("--annotations", metavar="FILE", help="the video's annotation (live_ros.annotation/1)")
    p.add_argument(
        "--known-objects",
        default=None,
        metavar="NOUNS",
        help="comma-separated nouns the model was trained on; events of other objects expect the generic answer",
    )
    p.add_argument("--json", metavar="OUT", help="also write the scores as JSON")
    p.set_defaults(run=run_score)


def run_score(args) -> int:
    """The ``score`` verb: print the word scores of saved responses. 0 ok, 1 failed."""
    from live_ros.data.annotations import load_annotation
    from live_ros.evaluation.truth import format_words, said_from_records, score_words, truth_from_annotation
    from live_ros.evaluation.truth import world_vocabulary

    try:
        data = json.loads(Path(args.responses).read_text())
        records = data.get("responses", []) if isinstance(data, dict) else data
        said = said_from_records(records)
        known = _nouns(args.known_objects)
        truth = (
            truth_from_annotation(load_annotation(Path(args.annotations)), known, world_vocabulary())
            if args.annotations
            else None
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _err("score", f"{err} (RESPONSES must be JSON with a list of responses)")
    result = score_words(truth, said)
    print(format_words(result, max_rows=1000))
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
        print(f"wrote {args.json}")
    return 0
