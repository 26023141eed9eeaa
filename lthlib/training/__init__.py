"""Training: one network (:mod:`.one_network`), many LeNets at once (:mod:`.population`), many
ResNets at once (:mod:`.conv_engine`), and the dispatch of a stage's networks to them
(:mod:`.stage_networks`).
"""
