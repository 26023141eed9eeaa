"""The paper's experiments (:mod:`.procedures`), the trials a process trains and their resume
points, sweeps, and tickets: read from the store, or found in a user's own network.
"""
