"""The ROS 2 nodes of live_ros: thin lifecycle shells around the functional core."""
