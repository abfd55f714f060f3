"""Design time: lab schema, topology generators, addressing, placement, and the constructs that turn
them into terraform resources. Nothing here talks to a host."""
