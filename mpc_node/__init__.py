"""MPC share-holder node: operational keys, message envelopes, durable encrypted storage."""
