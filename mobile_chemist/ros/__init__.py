"""ROS 2 adapters: the nodes' code. Importing this package needs rclpy; the library does not."""
