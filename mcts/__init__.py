"""Generic, domain-free Monte Carlo tree search (PUCB selection, store-persisted nodes).

Built by the emotional-support strategy search issue; the store already has its ``tree_nodes`` table.
"""
