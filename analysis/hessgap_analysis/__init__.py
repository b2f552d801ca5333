"""hessgap_analysis: reading hessgap runs and sweeps into numpy / pandas (h5py only; it never imports or
runs the C++ code). Put analysis/ on sys.path:

    import sys; sys.path.insert(0, "analysis")
    from hessgap_analysis import read_run, read_index, load_sweep, kendall_tau_b

    run = read_run("sweep/runs/3f2a19c0d1e2f3a4")   # a run folder or its run.h5
    run.final["test_accuracy"], run.measures["v_norm"], run.traces["layer_mean"], run.layers
    run.config["train"]["reg_method"], run.results()  # key results, NaN when absent

    idx = read_index("sweep")                        # index.h5: idx.spec, idx.runs (DataFrame)
    df = load_sweep("sweep")                         # one row per run (see load_sweep's docstring)
    df.groupby(["method", "noise_rate"]).test_accuracy.agg(["mean", "std"])
    kendall_tau_b(df.measure, df.gap_loss_noisy)     # NaN rows (failed runs) are dropped

The report (tables, figures, CSV) is analysis/report.py, built on hessgap_analysis.report.write_report.
"""
from .runs import FINAL_KEYS, RESULT_KEYS, Run, read_run
from .stats import kendall_tau_b, mean_std
from .sweep import (INDEX_FORMAT, NotASweepError, SweepIndex, derive_method, group_keys, is_sweep,
                    load_sweep, read_index)

__all__ = ["FINAL_KEYS", "RESULT_KEYS", "Run", "read_run", "kendall_tau_b", "mean_std", "INDEX_FORMAT",
           "NotASweepError", "SweepIndex", "derive_method", "group_keys", "is_sweep", "load_sweep", "read_index"]
