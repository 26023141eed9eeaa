"""The population engine: many fully-connected networks trained at once, number for number.
"""
