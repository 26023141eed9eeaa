"""Every mask, in one place: masks on torch.nn.utils.prune's reparametrisation and an
experiment's network with its mask (:mod:`.prune`), masks kept in the store as one bit per
weight (:mod:`.mask_files`), the next mask each procedure trains and when a stored one is
trusted (:mod:`.next_masks`), and the pruning plan of a user's own network
(:mod:`.own_network`).
"""
