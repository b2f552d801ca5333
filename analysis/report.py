#!/usr/bin/python3
"""Report of a hessgap sweep folder (`hessgap sweep SPEC.json --out-dir DIR`): writes DIR/report/report.md
with PNG figures and CSV tables beside it (sections: hessgap_analysis/report.py).

    /usr/bin/python3 analysis/report.py SWEEP_DIR [--out REPORT_DIR]

Exit codes: 0 written; 2 the folder is not a sweep (or its index is unreadable); 1 anything else.
"""
import argparse
import os
import sys

# The package lives beside this script; running the script puts this folder on sys.path already, and
# this line keeps `python3 -m`-less imports working when report.py is imported from elsewhere.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hessgap_analysis.report import write_report  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Tables, figures and Kendall's tau of a hessgap sweep folder.")
    p.add_argument("sweep_dir", help="folder written by `hessgap sweep --out-dir` (index.h5, runs/<run_id>/)")
    p.add_argument("--out", metavar="DIR", help="where to write report.md and its files (default SWEEP_DIR/report)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.sweep_dir, args.out)
    except ValueError as e:  # NotASweepError, a malformed index, a newer format
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
