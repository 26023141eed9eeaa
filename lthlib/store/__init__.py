"""The ``runs/`` store: one folder per (config, trial) named by a hash, whose files are read as
possibly hostile and trusted only when their hashes verify.
"""
