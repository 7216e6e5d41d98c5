"""Evaluation of a LIVE model (VideoLLM-online, paper section 4.2): pure Python, torch and
the model; no rclpy (the ROS side of replay-eval is :mod:`live_ros.ros.replay_eval`).

- :mod:`live_ros.evaluation.metrics`: the paper's metrics (LM-PPL, TimeDiff, Fluency,
  LM-correctness) as pure functions of an encoded stream and its logits.
- :mod:`live_ros.evaluation.offline`: teacher-forced evaluation of timed streams
  (``live-ros evaluate``): features, fitting the context, one forward, the metrics.
- :mod:`live_ros.evaluation.online`: streams through the streaming engine with its
  bounded cache (``live-ros evaluate-online``), scored against their turns.
- :mod:`live_ros.evaluation.score`: scoring responses against annotated events
  (one-to-one matching in a time window), answers, latency; the text table.
- :mod:`live_ros.evaluation.bag_streams`: a replayed bag as a timed stream for the
  offline evaluation, and the engine alone on its frames.
- :mod:`live_ros.evaluation.report`: replay-eval's report (report.json, table.txt).
- :mod:`live_ros.evaluation.plots`: the timeline PNG.
"""
