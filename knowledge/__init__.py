"""The knowledge base and the robot that answers from it."""
