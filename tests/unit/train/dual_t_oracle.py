"""Oracle for hessgap::train::estimate_dual_t: the reference's Dual-T (SPEC §5.3) written with numpy.

Reads {"probs": [[...]], "labels": [...]} on stdin and prints {"t_spade", "t_club", "c", "percentiles"} as JSON.
percentiles: numpy.percentile(v, 97, method="higher") of each column of the ORIGINAL matrix.
"""
import json
import sys

import numpy as np


def dual_t(eta, noisy):
    eta = np.array(eta, dtype=np.float64)
    n, k = eta.shape
    pred = eta.argmax(1)
    t_spade = np.zeros((k, k))
    for p, y in zip(pred, noisy):
        t_spade[p, y] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        t_spade = t_spade / t_spade.sum(1, keepdims=True)
    t_spade[np.isnan(t_spade)] = 0.0
    t_club = np.zeros((k, k))
    for i in range(k):
        col = eta[:, i]  # a view: the zeroing below changes eta itself, as the reference does
        thresh = np.percentile(col, 97, method="higher")
        col[col >= thresh] = 0.0
        t_club[i] = eta[np.argmax(col)]
    return t_spade, t_club, t_club @ t_spade


def main():
    req = json.load(sys.stdin)
    probs = np.array(req["probs"], dtype=np.float64)
    pct = [float(np.percentile(probs[:, i], 97, method="higher")) for i in range(probs.shape[1])]
    s, c, m = dual_t(probs, req["labels"])
    json.dump({"t_spade": s.tolist(), "t_club": c.tolist(), "c": m.tolist(), "percentiles": pct}, sys.stdout)


if __name__ == "__main__":
    main()
