"""ordinal's wine data as the ordinal tests fit it: the dummy columns R's contrasts make
(``tempwarm``, ``contactyes``) and the rating as an ordered categorical."""

from pathlib import Path

import pandas as pd

FIXTURES = Path(__file__).parent / "fixtures" / "ordinal"


def wine():
    """``(X, y, the whole frame)``."""
    frame = pd.read_csv(FIXTURES / "wine.csv")
    X = pd.DataFrame(
        {
            "tempwarm": (frame["temp"] == "warm").astype(float),
            "contactyes": (frame["contact"] == "yes").astype(float),
        }
    )
    y = pd.Series(pd.Categorical(frame["rating"], ordered=True), name="rating")
    return X, y, frame
