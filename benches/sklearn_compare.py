"""scikit-learn's figures on the rows `cargo bench --bench train_bench` wrote.

Usage: python3 benches/sklearn_compare.py TRAIN.csv VALID.csv

Both files have a header row and the 0/1 label in the last column. Prints one
line per model in the bench's format (best of 3 fits; metrics at threshold 0.5
on P(label 1), as reconcile's metrics compute them).
"""

import sys
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

RUNS = 3


def load(path):
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    return data[:, :-1], data[:, -1].astype(int)


def report(name, make, x, y, xv, yv):
    best = float("inf")
    model = None
    for _ in range(RUNS):
        model = make()
        started = time.perf_counter()
        model.fit(x, y)
        best = min(best, time.perf_counter() - started)
    proba = model.predict_proba(xv)[:, 1]
    predicted = (proba >= 0.5).astype(int)
    print(
        f"{name:<36} fit {best:>8.3f} s   auc {roc_auc_score(yv, proba):.4f}"
        f"   f1 {f1_score(yv, predicted, zero_division=0):.4f}"
        f"   acc {accuracy_score(yv, predicted):.4f}",
        flush=True,
    )


def main():
    x, y = load(sys.argv[1])
    xv, yv = load(sys.argv[2])
    report(
        "sklearn forest (300 trees, n_jobs=-1)",
        lambda: RandomForestClassifier(
            n_estimators=300,
            max_features="sqrt",
            class_weight="balanced",
            n_jobs=-1,
            random_state=42,
        ),
        x, y, xv, yv,
    )
    report(
        "sklearn logistic (scaled, balanced)",
        lambda: make_pipeline(
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=1000),
        ),
        x, y, xv, yv,
    )
    report(
        "sklearn tree (balanced)",
        lambda: DecisionTreeClassifier(class_weight="balanced", random_state=42),
        x, y, xv, yv,
    )


if __name__ == "__main__":
    main()
