"""The reference house-price model (a copy of the team's shared benchmark model), for the README and notebooks.

Usage: python house_model.py OUT.joblib
Input columns: house-location (str), bedrooms (int), bathrooms (float); output: a price (float).
One call of predict() costs about the same for 1 row as for 100 rows, so per-call overhead and
batching dominate serving throughput.
"""
import sys

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

PRICE_PER_LOCATION = {"New York": 900, "San Francisco": 1100, "Austin": 400, "Chicago": 350}


def training_frame(n: int = 5000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    location = rng.choice(list(PRICE_PER_LOCATION), n)
    bedrooms = rng.integers(1, 6, n)
    bathrooms = rng.choice([1, 1.5, 2, 2.5, 3], n)
    base = pd.Series(location).map(PRICE_PER_LOCATION).to_numpy()
    price = base * 1000 + bedrooms * 50_000 + bathrooms * 30_000 + rng.normal(0, 20_000, n)
    frame = pd.DataFrame({"house-location": location, "bedrooms": bedrooms, "bathrooms": bathrooms})
    return frame, price


def train() -> Pipeline:
    X, y = training_frame()
    encode = ColumnTransformer(
        [("location", OneHotEncoder(handle_unknown="ignore"), ["house-location"])],
        remainder="passthrough",
    )
    return Pipeline([("prep", encode), ("ridge", Ridge())]).fit(X, y)


if __name__ == "__main__":
    from pathlib import Path

    out = sys.argv[1] if len(sys.argv) > 1 else "house_model.joblib"
    joblib.dump(train(), out)
    kib = Path(out).stat().st_size / 1024
    print(f"wrote {out}: house-price pipeline (one-hot location + ridge), {kib:.1f} KiB")
