"""A second process for test_interfaces.py: it answers every FrameTokens on
live/frame_tokens with a Response on live/response (the tokens' checksum in its text) and
serves live/query. Prints READY once its endpoints exist."""

import array  # noqa: F401
import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from live_ros import runtime
from live_ros.msg import FrameTokens, Response
from live_ros.ros import qos
from live_ros.srv import Query


def main() -> int:
    runtime.prepare_ros()
    rclpy.init()
    node = rclpy.create_node("interfaces_peer", namespace="live")
    publisher = node.create_publisher(Response, "response", qos.responses())

    def on_tokens(msg: FrameTokens) -> None:
        values = list(msg.data)
        out = Response()
        out.header = msg.header
        out.response_id = msg.frame_index
        out.kind = "narration"
        out.text = f"{msg.encoder}|{msg.num_tokens}x{msg.dim}|n={len(values)}|sum={sum(values):.4f}"
        out.final = True
        out.video_time = msg.frame_index * 0.5
        out.latency = 0.25
        publisher.publish(out)

    def on_query(request: Query.Request, response: Query.Response) -> Query.Response:
        response.accepted = bool(request.text)
        response.query_id = len(request.text)
        response.message = "" if request.text else "empty query: send a question"
        return response

    node.create_subscription(FrameTokens, "frame_tokens", on_tokens, qos.frames())
    node.create_service(Query, "query", on_query)
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
