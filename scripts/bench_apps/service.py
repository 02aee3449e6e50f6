"""A small data service: fit, test, summarise, plot; prints one JSON line."""
import io
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import optimize, stats
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> int:
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "when": pd.date_range("2024-01-01", periods=n, freq="h")})
    df["y"] = (df.x1 + 0.5 * df.x2 + rng.normal(scale=0.5, size=n) > 0).astype(int)
    daily = df.set_index("when").resample("D").mean()
    fit = optimize.curve_fit(lambda t, a, b: a * t + b, np.arange(len(daily)), daily.x1.values)[0]
    ttest = stats.ttest_ind(df.x1[df.y == 1], df.x1[df.y == 0])
    X = StandardScaler().fit_transform(df[["x1", "x2"]])
    X_train, X_test, y_train, y_test = train_test_split(X, df.y, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X_train, y_train)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X_train, y_train)
    fig, ax = plt.subplots()
    ax.plot(daily.index, daily.x1)
    ax.set_title("daily mean")
    png = io.BytesIO()
    fig.savefig(png, format="png")
    out = {"accuracy": round(model.score(X_test, y_test), 3),
           "forest": round(forest.score(X_test, y_test), 3), "slope": float(fit[0]),
           "t": float(ttest.statistic), "png_bytes": len(png.getvalue())}
    assert out["accuracy"] > 0.8 and png.getvalue().startswith(b"\x89PNG"), out
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
