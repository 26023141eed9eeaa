"""Pruning: masks on torch.nn.utils.prune's reparametrisation (:mod:`.prune`) and the masks kept
in the store, one bit per weight (:mod:`.mask_files`).
"""
