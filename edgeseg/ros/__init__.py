"""ROS 2: the segmentation node (:mod:`edgeseg.ros.node`, needs rclpy) and robot logs in and
out without ROS (:mod:`edgeseg.ros.bag`, rosbags), sharing one message-conversion module
(:mod:`edgeseg.ros.messages`). Nothing heavy is imported here."""
