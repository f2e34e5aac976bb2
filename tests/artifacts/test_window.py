"""The sliding window of live data: it forgets old rows, samples the window (not all history),
and its JSON form survives the trip through the operator and refuses what does not fit."""

import numpy as np
import pandas as pd
import pytest

from modelfactory_artifacts.drift import Thresholds
from modelfactory_artifacts.profile import ReferenceProfile, build_profile
from modelfactory_artifacts.window import LiveWindow, WindowError, evaluate_window, parse_window

pytestmark = pytest.mark.unit
RNG = np.random.default_rng(11)


def reference(n: int = 3_000) -> ReferenceProfile:
    train = pd.DataFrame(
        {"a": RNG.normal(size=n), "b": RNG.normal(size=n), "c": RNG.choice(["x", "y", "z"], n)}
    )
    return build_profile(
        train,
        {"a": "numeric", "b": "numeric", "c": "categorical"},
        target=pd.Series(RNG.choice(["no", "yes"], n)),
        target_kind="categorical",
        predictions=RNG.choice(["no", "yes"], n),
    )


def batch(rows: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "a": RNG.normal(loc=shift, size=rows),
        "b": RNG.normal(size=rows),
        "c": RNG.choice(["x", "y", "z"], rows),
    }


def test_the_window_forgets_old_rows_and_samples_only_the_window() -> None:
    window = LiveWindow(reference(), size=1_000, segments=10, sample_rows=200)
    for _ in range(50):
        window.add(batch(100, shift=-50.0), np.array(["no"] * 100), 100)
    for _ in range(10):
        window.add(batch(100, shift=+50.0), np.array(["yes"] * 100), 100)
    rows, counts, predictions, samples = window.totals()
    assert rows <= 1_000
    # Only the recent, shifted rows are left: all in the top bin, and so is the sample.
    assert counts["a"][-2] == rows and counts["a"][:-2].sum() == 0
    assert len(samples["a"]) <= 200 and (samples["a"] > 10).all()
    assert predictions is not None and predictions.sum() == rows


def test_a_large_batch_is_split_at_segment_ends_so_the_window_keeps_its_size() -> None:
    window = LiveWindow(reference(), size=1_000, segments=10)
    window.add(batch(2_550, shift=-50.0), np.array(["no"] * 2_550), 2_550)
    window.add(batch(950, shift=+50.0), np.array(["yes"] * 950), 950)
    rows, counts, predictions, _ = window.totals()
    # Ten full segments of 100 and an empty current one: 950 new rows and 50 old.
    assert rows == 1_000 and counts["a"][-2] == 950 and counts["a"][0] == 50
    assert predictions is not None and sorted(predictions.tolist()) == [0, 0, 50, 950]


def test_a_snapshot_evaluates_to_the_same_verdict_and_refuses_nothing() -> None:
    window = LiveWindow(reference(), size=5_000)
    for _ in range(20):
        window.add(batch(100, shift=1.5), RNG.choice(["no", "yes"], 100), 100)
    thresholds = Thresholds(min_samples=100, drift_share=0.3)
    direct = window.evaluate(thresholds)
    via_json = evaluate_window(window.profile, window.snapshot(), thresholds)
    assert direct.drifted and via_json.drifted
    assert direct.drifted_features == via_json.drifted_features == ["a"]
    assert via_json.features[0].pvalue is not None


def test_the_same_distribution_is_not_drift() -> None:
    window = LiveWindow(reference(), size=5_000)
    for _ in range(50):
        window.add(batch(100), RNG.choice(["no", "yes"], 100), 100)
    report = window.evaluate(Thresholds(min_samples=100))
    assert report.sufficient and not report.drifted, report.as_dict()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"samples": -1}, "samples"),
        ({"samples": True}, "samples"),
        ({"counts": {"a": [1] * 21, "b": [1] * 21}}, "no counts for feature"),
        ({"counts": "x"}, "counts must map"),
        ({"extra_counts": {"zzz": [1]}}, "does not have"),
        ({"a_counts": [1, 2]}, "list of 21"),
        ({"a_counts": [-1] * 21}, "negative"),
        ({"a_counts": ["1"] * 20 + [{}]}, "integers"),
        ({"a_counts": [10**30] * 21}, "integers"),
        ({"sample": {"a": list(range(10_001))}}, "at most 10000"),
        ({"sample": {"a": [[1, 2]]}}, "flat list"),
        ({"sample": {"a": ["x"]}}, "numbers"),
        ([], "JSON object"),
    ],
)
def test_a_window_that_does_not_fit_the_profile_is_refused(change, problem) -> None:  # type: ignore[no-untyped-def]
    profile = reference()
    window = LiveWindow(profile, size=1_000)
    window.add(batch(100), None, 100)
    data = window.snapshot()
    if isinstance(change, list):
        data = change
    else:
        change = dict(change)
        if "a_counts" in change:
            data["counts"]["a"] = change.pop("a_counts")
        if "extra_counts" in change:
            data["counts"].update(change.pop("extra_counts"))
        data.update(change)
    with pytest.raises(WindowError, match=problem):
        parse_window(profile, data)
