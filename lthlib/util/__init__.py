"""Small tools every layer may use: atomic writes, the repository's paths, the device, the
version, and the errors a user can cause.
"""
