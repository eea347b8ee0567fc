"""Connected components of an undirected graph, vectorised (numpy), used by dedup and splits."""

from __future__ import annotations

import numpy as np


def connected_components(n_nodes: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each node's label is the smallest node id of its component, so labels depend on node
    ids only, never on edge order. Min-label hooking plus pointer jumping."""
    lab = np.arange(n_nodes, dtype=np.int64)
    while u.size:
        lu, lv = lab[u], lab[v]
        if np.array_equal(lu, lv):
            break
        low = np.minimum(lu, lv)
        np.minimum.at(lab, lu, low)
        np.minimum.at(lab, lv, low)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    return lab
