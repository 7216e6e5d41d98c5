"""live_llm's journal (live_ros.engine.journal) on real files: what the next process reads
after a kill (leftovers, ids, counters) and after a clean stop, and an unreadable file."""

from __future__ import annotations

from live_ros.engine.journal import QueryJournal, state_dir


def test_after_a_kill_leftovers_ids_and_counters_continue(tmp_path):
    path = tmp_path / "live.live_llm.domain7.json"
    first = QueryJournal(path)
    assert (first.next_query_id, first.next_response_id, first.restarts, first.leftovers) == (1, 1, 0, {})
    first.accepted(1, "what is it?")
    first.accepted(2, "and now?")
    first.ended(1, response_id=5, answered=True)
    # no close(): the process was killed here
    second = QueryJournal(path)
    assert list(second.leftovers) == [2] and second.leftovers[2]["text"] == "and now?"
    assert (second.next_query_id, second.next_response_id, second.restarts) == (3, 6, 1)
    assert second.counters["queries_accepted"] == 2 and second.counters["queries_answered"] == 1
    second.ended(2, response_id=6)  # the restarted node refused it
    second.close()
    third = QueryJournal(path)  # after a clean stop: ids go on, counters restart
    assert (third.leftovers, third.restarts) == ({}, 0)
    assert (third.next_query_id, third.next_response_id) == (3, 7)
    assert third.counters["queries_accepted"] == 0


def test_an_unreadable_journal_starts_afresh_and_says_so(tmp_path):
    path = tmp_path / "j.json"
    path.write_text("{not json")
    journal = QueryJournal(path)
    assert "unreadable" in journal.error and journal.next_query_id == 1
    assert QueryJournal(path).error == ""  # rewritten as a valid journal


def test_state_dir_follows_the_parameter_then_ros_home(tmp_path, monkeypatch):
    assert state_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home" / "live_ros"
