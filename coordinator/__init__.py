"""The untrusted coordinator: client API, relay of protocol messages, request records."""
