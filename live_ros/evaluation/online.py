"""Online evaluation through the streaming engine (paper section 3.4): a stream's frames go
through :class:`~live_ros.engine.StreamEngine` with its bounded KV cache, its user turns
are asked at their times, and what the model says is scored against the stream's own
assistant turns with the replay scorer (:mod:`live_ros.evaluation.score`: one-to-one matching
in a time window). This is how long streams (many times the cache budget) are checked:
the offline metrics of :mod:`live_ros.evaluation.offline` need the whole stream in context.

    .venv/bin/live-ros evaluate-online data/world/long/streams.jsonl --features DIR \\
        [--checkpoint DIR] [--theta 0.725] [--cache-budget 1280] [--json OUT]

Per stream: online TimeDiff (mean |response - turn time| over matched proactive turns),
missed and spurious rates, text similarity of the matched responses, and for each
reminder ("tell me when ...") whether a response within ``reminder_window`` of its event
names the object.
"""

from __future__ import annotations

import difflib
import re
import time
from pathlib import Path
from typing import Sequence

from live_ros.data.streams import StreamSample
from live_ros.evaluation.offline import load_stream_features
from live_ros.evaluation.score import EventRef, Said, match_events, normalize

WINDOW = (-0.5, 3.0)  # a response may come this early / late for a turn (seconds)
REMINDER_WINDOW = (0.0, 1.0)  # a reminder is honoured by a response this close after its event


def run_stream(engine, sample: StreamSample, frame_tokens, frame_times) -> tuple[list[Said], list[dict]]:
    """Feed ``frame_tokens [T, N, dim]`` (times ``frame_times``) into ``engine`` (a fresh
    :class:`StreamEngine`, given the stream's standing instruction), asking each user turn of ``sample`` right after the last frame at
    or before its time. Returns the final responses (``Said``) and one record per frame
    (index, time, p_interval, spoke)."""
    from live_ros.engine import ResponseEvent, SilentEvent

    if engine.cfg.instruction != sample.instruction:
        engine.configure(instruction=sample.instruction)  # the stream's standing instruction
    engine.reset()
    users = sorted((t for t in sample.turns if t.role == "user"), key=lambda t: t.time)
    said: list[Said] = []
    frames: list[dict] = []
    t0 = float(frame_times[0]) if len(frame_times) else 0.0

    def collect(events, proactive: bool) -> None:
        for ev in events:
            if isinstance(ev, SilentEvent):
                frames.append({"index": ev.frame_index, "time": ev.video_time, "p": ev.p_interval, "spoke": False})
            elif isinstance(ev, ResponseEvent) and ev.final:
                said.append(
                    Said(
                        ev.response_id,
                        ev.query_id,
                        ev.response_kind,
                        ev.text,
                        float(ev.video_time or 0.0),
                        proactive and ev.proactive,
                        float(ev.video_time or 0.0),
                    )
                )
                if ev.proactive:
                    frames.append({"index": ev.frame_index, "time": ev.video_time, "p": ev.p_interval, "spoke": True})

    k = 0
    for i in range(len(frame_times)):
        t = float(frame_times[i]) - t0
        while k < len(users) and users[k].time < t - 1e-6:
            collect(engine.ask(users[k].text), False)
            k += 1
        collect(engine.take_frame(frame_tokens[i], float(frame_times[i])), True)
    return said, frames


def turn_refs(sample: StreamSample) -> list[EventRef]:
    """The stream's assistant turns that a frame triggers (not the immediate answers)."""
    asked = {round(t.time, 3) for t in sample.turns if t.role == "user"}
    out = []
    for t in sample.turns:
        if t.role == "assistant" and round(t.time, 3) not in asked:
            obj = t.event.split(":", 1)[1].split("@", 1)[0] if ":" in t.event else ""
            out.append(EventRef(t.time, t.kind, obj, t.text))
    return out


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, normalize(a), normalize(b)).ratio()


def score_stream(sample: StreamSample, said: Sequence[Said], window=WINDOW, reminder_window=REMINDER_WINDOW) -> dict:
    refs = turn_refs(sample)
    proactive = [s for s in said if s.proactive]
    matched = match_events(refs, said, window, prefer_object=False)
    diffs = [said[j].time - refs[i].time for i, j in matched.items()]
    sims = [similarity(refs[i].text, said[j].text) for i, j in matched.items()]
    reminders = []
    for r in refs:
        if r.kind != "reminder" or not r.object:
            continue
        stamp = re.search(
            r"@([0-9.]+)", next(t.event for t in sample.turns if t.role == "assistant" and t.time == r.time)
        )
        if stamp is None:  # what .group on no match raised
            raise AttributeError(f"reminder at {r.time} s: its event names no time (@seconds)")
        event_time = float(stamp.group(1))
        hit = next(
            (
                s
                for s in proactive
                if reminder_window[0] - 1e-6 <= s.time - r.time <= reminder_window[1] + 1e-6
                and re.search(rf"\b{re.escape(r.object)}\b", s.text.lower())
            ),
            None,
        )
        reminders.append(
            {
                "object": r.object,
                "event_time": event_time,
                "turn_time": r.time,
                "honoured": hit is not None,
                "response": hit.text if hit else None,
                "response_time": hit.time if hit else None,
            }
        )
    n = len(refs)
    minutes = max(sample.duration / 60.0, 1e-9)
    return {
        "video_id": sample.video_id,
        "duration": sample.duration,
        "turns": n,
        "matched": len(matched),
        "time_diff": sum(abs(d) for d in diffs) / len(diffs) if diffs else None,
        "signed_time_diff": sum(diffs) / len(diffs) if diffs else None,
        "missed_rate": (n - len(matched)) / n if n else None,
        "spurious": len(proactive) - len(matched),
        "spurious_per_min": (len(proactive) - len(matched)) / minutes,
        "text_similarity": sum(sims) / len(sims) if sims else None,
        "reminders": reminders,
        "responses": len(said),
    }


def mean(rows: Sequence[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def without_questions(sample: StreamSample) -> StreamSample:
    """The stream with its questions and their answers left out (its standing instruction
    and the responses to it stay): how the model does with nobody asking."""
    import copy

    out = copy.copy(sample)
    asked = {round(t.time, 6) for t in sample.turns if t.role == "user"}
    out.turns = [
        t for t in sample.turns if t.role == "assistant" and not (t.kind == "answer" and round(t.time, 6) in asked)
    ]
    return out


def stream_truth(sample: StreamSample, known_objects: Sequence[str] | None = None):
    """The ground truth of a stream for :mod:`live_ros.evaluation.truth`: its annotation
    (``meta["annotation"]``, written by ``live-ros generate world``), or None."""
    from live_ros.evaluation.truth import truth_from_annotation, world_vocabulary

    path = sample.meta.get("annotation")
    if not path or not Path(path).is_file():
        return None
    from live_ros.data.annotations import load_annotation

    return truth_from_annotation(load_annotation(Path(path)), known_objects, world_vocabulary())


def evaluate_online(
    engine, samples: Sequence[StreamSample], features_dir, progress=None, known_objects: Sequence[str] | None = None
) -> dict:
    """Run each stream through ``engine`` (features in ``features_dir``) and score it: the
    words of what it said against the stream's annotation (:mod:`live_ros.evaluation.truth`;
    ``known_objects``: the nouns the model was trained on, others expect the generic
    answer) and the timing against its turns. ``{"streams", "words": the word scores over
    all streams, "metrics": timing means over streams, "reminders", "reminders_honoured",
    "per_stream"}``."""
    from live_ros.evaluation.truth import merge_scores, score_words

    rows = []
    for n, sample in enumerate(samples, 1):
        feats, times, _ = load_stream_features(sample, Path(features_dir) if features_dir else None)
        t0 = time.perf_counter()
        said, frames = run_stream(engine, sample, feats.float(), times.double())
        row = score_stream(sample, said)
        words = score_words(stream_truth(sample, known_objects), said)
        words.video_id = sample.video_id
        row.update(
            frames=len(frames),
            seconds=round(time.perf_counter() - t0, 1),
            peak_cache_tokens=engine.stats.cache_peak_tokens,
            said=[{"time": s.time, "kind": s.kind, "text": s.text, "proactive": s.proactive} for s in said],
            words=words.to_dict(),
        )
        rows.append(row)
        if progress:
            w = words.summary
            progress(
                f"[{n}/{len(samples)}] {sample.video_id}: {len(frames)} frames, "
                + (
                    f"{w['correct']}/{w['events']} events right, {w['hallucinated']} hallucinated, "
                    if words.scored
                    else ""
                )
                + f"{row['matched']}/{row['turns']} turns matched, {row['spurious']} spurious, {row['seconds']} s"
            )
    reminders = [r for row in rows for r in row["reminders"]]
    return {
        "streams": len(rows),
        "words": merge_scores([r["words"] for r in rows]),
        "metrics": {
            k: mean(rows, k)
            for k in ("time_diff", "signed_time_diff", "missed_rate", "spurious_per_min", "text_similarity")
        },
        "reminders": len(reminders),
        "reminders_honoured": sum(r["honoured"] for r in reminders),
        "per_stream": rows,
    }


def format_online(result: dict) -> str:
    """What each stream was told and scored (the words: per event and per response), then
    the summary: the word scores over all streams first, the timing per stream after."""
    from live_ros.evaluation.truth import WordScore, format_totals, format_words

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = []
    for r in result["per_stream"]:
        if "words" in r:
            lines += [f"== {r['video_id']} ==", format_words(WordScore(**r["words"])), ""]
    if "words" in result:
        lines += ["words, all streams (live_ros/evaluation/truth.py):", format_totals(result["words"]), ""]
    lines += [
        "timing against the streams' turns:",
        f"{'stream':<22} {'min':>5} {'turns':>5} {'matched':>7} {'TimeDiff':>8} {'missed':>7} "
        f"{'spur/min':>8} {'text':>5}  reminders",
    ]
    for r in result["per_stream"]:
        rem = ", ".join(f"{x['object']} {'yes' if x['honoured'] else 'NO'}" for x in r["reminders"]) or "-"
        lines.append(
            f"{r['video_id']:<22} {r['duration'] / 60:5.1f} {r['turns']:5d} {r['matched']:7d} "
            f"{f(r['time_diff'], '7.2f')}s {f(r['missed_rate'] and 100 * r['missed_rate'], '6.1f')}% "
            f"{r['spurious_per_min']:8.2f} {f(r['text_similarity'], '5.2f')}  {rem}"
        )
    m = result["metrics"]
    lines.append(
        f"{'mean':<22} {'':>5} {'':>5} {'':>7} {f(m['time_diff'], '7.2f')}s "
        f"{f(m['missed_rate'] and 100 * m['missed_rate'], '6.1f')}% {f(m['spurious_per_min'], '8.2f')} "
        f"{f(m['text_similarity'], '5.2f')}  {result['reminders_honoured']}/{result['reminders']} honoured"
    )
    return "\n".join(lines)
