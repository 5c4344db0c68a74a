"""The chaos suite (issue 11): faults done for real, each case asserting what users care about.

Every test here carries the `chaos` marker (`make chaos` runs them all); the slow ones also carry
`chaos_slow`, which `make test` leaves out.
"""
