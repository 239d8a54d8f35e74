"""The worker runtime: producers, fetch/ack, wake-ups, and the leader's periodic duties."""
