"""Studies beyond one experiment: stability to SGD noise (:mod:`.lmc`, :mod:`.stability`,
:mod:`.stability_map`) and the budget plateau (:mod:`.plateau`).
"""
