"""live_llm's journal: what a restart of the node must not lose (README, "Faults, load and
restarts"). Plain Python, no ROS: the node writes it, the next process reads it."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

# Status counters that continue across restarts (kept in the journal).
COUNTERS = ("frames_in", "frames_dropped", "queries_accepted", "queries_answered")


def state_dir(param: str = "") -> Path:
    """Where live_llm keeps its journal: the parameter, else $ROS_HOME/live_ros (ROS_HOME
    defaults to ~/.ros, as for ROS logs)."""
    if param:
        return Path(param).expanduser()
    return Path(os.environ.get("ROS_HOME") or Path.home() / ".ros").expanduser() / "live_ros"


class QueryJournal:
    """live_llm's state on disk, so that a restart (kill -9, crash, respawn) loses nothing
    silently: the accepted queries not yet answered, the next query and response ids, the
    status counters and the last frame_index taken in. One small JSON file per node (its
    namespace, name and ROS_DOMAIN_ID), rewritten atomically (a temporary file renamed over
    it) whenever a query is accepted or ends, a response ends, and about once a second
    while counters change. The process that starts next reads it: ids always continue
    after the highest ever given; after an unclean end (kill -9, crash: ``clean`` false)
    leftover queries get a refusal and the counters continue, after a clean stop
    (deactivate, Ctrl-C, SIGTERM) the counters start again from 0."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.RLock()
        self.error = ""
        data = {}
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as err:  # unreadable: start afresh, and say so
            self.error = f"journal {path} unreadable ({err}); starting a new one"
            data = {}
        crashed = bool(data) and not data.get("clean", False)
        self.leftovers = {int(k): v for k, v in data.get("pending", {}).items()}
        self.pending: dict[int, dict] = {}
        self.next_query_id = int(data.get("next_query_id", 1))
        self.next_response_id = int(data.get("next_response_id", 1))
        self.restarts = int(data.get("restarts", 0)) + 1 if crashed else 0
        self.base = {k: int(data.get("counters", {}).get(k, 0)) if crashed else 0 for k in COUNTERS}
        self.clean = False
        self.counters = dict(self.base)
        self.last_frame_index = data.get("last_frame_index")
        self.write()

    def write(self) -> None:
        """(Under ``lock`` or before sharing) the whole state, atomically."""
        data = {
            "pid": os.getpid(),
            "clean": self.clean,
            "restarts": self.restarts,
            "next_query_id": self.next_query_id,
            "next_response_id": self.next_response_id,
            "counters": self.counters,
            "last_frame_index": self.last_frame_index,
            "pending": {str(k): v for k, v in {**self.leftovers, **self.pending}.items()},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)
        except OSError as err:
            self.error = f"cannot write the journal {self.path} ({err}); set state_dir to a writable folder"

    def accepted(self, query_id: int, text: str) -> None:
        with self.lock:
            self.pending[query_id] = {"text": text[:200], "accepted_at": time.time()}
            self.next_query_id = max(self.next_query_id, query_id + 1)
            self.counters["queries_accepted"] += 1  # at once, not at the next status report
            self.write()

    def close(self) -> None:
        """A clean stop: every query has ended (the engine refused the waiting ones)."""
        with self.lock:
            self.clean = True
            self.write()

    def ended(self, query_id: int, response_id: int, answered: bool = False) -> None:
        """A final response (query_id 0: a narration; ``answered``: a query's answer) was
        published."""
        with self.lock:
            if answered and query_id in self.pending:
                self.counters["queries_answered"] += 1
            self.pending.pop(query_id, None)
            self.leftovers.pop(query_id, None)
            self.next_response_id = max(self.next_response_id, response_id + 1)
            self.write()
