"""The drafters; each module registers itself with `make_drafter`."""
