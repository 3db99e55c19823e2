"""Evidently's drift figures beside reconcile's, column by column.

Usage: python benches/evidently_compare.py OURS.jsonl [REFERENCE_DIR CURRENT_DIR [TABLES_DIR]]

OURS.jsonl holds one JSON object per column, {column, method, score,
threshold, drifted}, as `cargo run --example drift_compare -- REFERENCE_DIR
CURRENT_DIR` prints them. The directories default to the example's
specs/data/2024-01-31 (reference) and specs/data/2024-02-29 (current); the
declared column types come from TABLES_DIR (default specs/tables): int/float
columns are numerical, string/bool categorical, dates and primary keys are not
compared. Runs Evidently's DataDriftPreset (0.7 API) on the same columns and
prints a side-by-side table. Exits 1 when any column's method or verdict
differs, or its score differs by more than 1e-3; 2 on bad input.
"""

import json
import os
import sys
import time

import pandas as pd
import yaml
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

TOLERANCE = 1e-3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Evidently reports its stattests by display name; reconcile by stattest name.
METHODS = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}


def load_tables(tables_dir):
    """(table name, {column: declared type}, primary key) per table spec."""
    tables = []
    for name in sorted(os.listdir(tables_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(tables_dir, name), encoding="utf-8") as f:
            spec = yaml.safe_load(f)
        tables.append((spec["name"], spec["columns"], spec.get("primaryKey", [])))
    return tables


def read_window(folder, tables):
    """One DataFrame per table, typed as declared, keyed by table name."""
    frames = {}
    for table, columns, _ in tables:
        raw = pd.read_csv(os.path.join(folder, f"{table}.csv"), dtype=str, keep_default_na=False)
        frame = pd.DataFrame(index=raw.index)
        for column, declared in columns.items():
            text = raw[column].replace("", None)
            if declared in ("int", "float"):
                frame[column] = pd.to_numeric(text).astype("float64")
            elif declared == "bool":
                frame[column] = text.map({"True": True, "False": False, "true": True, "false": False, "1": True, "0": False})
            else:
                frame[column] = text
        frames[table] = frame
    return frames


def evidently_drift(reference, current, tables):
    """{column: (method, score, drifted)} from one DataDriftPreset per table."""
    results = {}
    for table, columns, key in tables:
        numerical = [c for c, t in columns.items() if t in ("int", "float") and c not in key]
        categorical = [c for c, t in columns.items() if t in ("string", "bool") and c not in key]
        monitored = numerical + categorical
        if not monitored:
            continue
        definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
        ref = Dataset.from_pandas(reference[table][monitored], data_definition=definition)
        cur = Dataset.from_pandas(current[table][monitored], data_definition=definition)
        snapshot = Report([DataDriftPreset(columns=monitored)]).run(cur, ref)
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if config.get("type", "").split(":")[-1] != "ValueDrift":
                continue
            method = METHODS.get(config["method"], config["method"])
            score = float(metric["value"])
            threshold = float(config["threshold"])
            # Evidently's own rules: KS drifts at p <= threshold, chi2 and Z
            # at p < threshold, distances at score >= threshold.
            if method == "ks":
                drifted = score <= threshold
            elif method in ("chisquare", "z"):
                drifted = score < threshold
            else:
                drifted = score >= threshold
            results[config["column"]] = (method, score, drifted)
    return results


def main(argv):
    if len(argv) not in (2, 4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    ours_path = argv[1]
    ref_dir = argv[2] if len(argv) > 2 else os.path.join(ROOT, "specs", "data", "2024-01-31")
    cur_dir = argv[3] if len(argv) > 3 else os.path.join(ROOT, "specs", "data", "2024-02-29")
    tables_dir = argv[4] if len(argv) > 4 else os.path.join(ROOT, "specs", "tables")

    ours = {}
    with open(ours_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                ours[row["column"]] = row

    tables = load_tables(tables_dir)
    t0 = time.perf_counter()
    theirs = evidently_drift(read_window(ref_dir, tables), read_window(cur_dir, tables), tables)
    elapsed = time.perf_counter() - t0

    header = f"{'column':<32} {'evidently':<14} {'score':>10} {'drift':>5}   {'ours':<14} {'score':>10} {'drift':>5}   {'|diff|':>9}"
    print(header)
    print("-" * len(header))
    failures = []
    for column in sorted(set(theirs) | set(ours)):
        if column not in theirs:
            print(f"{column:<32} {'(missing)':<14}")
            failures.append(column)
            continue
        if column not in ours:
            method, score, drifted = theirs[column]
            print(f"{column:<32} {method:<14} {score:>10.6f} {str(drifted):>5}   {'(missing)':<14}")
            failures.append(column)
            continue
        method, score, drifted = theirs[column]
        mine = ours[column]
        diff = abs(score - float(mine["score"]))
        bad = method != mine["method"] or drifted != mine["drifted"] or not diff <= TOLERANCE
        if bad:
            failures.append(column)
        print(
            f"{column:<32} {method:<14} {score:>10.6f} {str(drifted):>5}   "
            f"{mine['method']:<14} {float(mine['score']):>10.6f} {str(mine['drifted']):>5}   "
            f"{diff:>9.2e}{'  MISMATCH' if bad else ''}"
        )
    print(f"\n{len(theirs)} columns; Evidently took {elapsed:.2f} s in process")
    if failures:
        print(f"mismatch: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
