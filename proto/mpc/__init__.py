"""Protocol buffers of the MPC network (package mpc.v1); see scripts/gen_proto.py."""
