"""The dashboard: reviews made in the Review page show up in its counts and charts."""

from __future__ import annotations

from apptest_support import Workbench, add_instant_updates, signed_in_app
from desk_presses import desk_payload, label_press, send

import db


def metric(at, label: str) -> int:
    return int(next(m.value for m in at.metric if m.label == label))


def test_reviews_move_the_counts_and_draw_the_rate_charts(workbench: Workbench) -> None:
    manager = signed_in_app("manager")
    manager.switch_page("pages/dashboard.py").run()
    assert not manager.exception, manager.exception
    assert metric(manager, "Reviewed") == 0
    assert any("No reviewed parts yet" in info.value for info in manager.info)

    inspector = signed_in_app("inspector")
    inspector.switch_page("pages/review.py").run()
    first, second = [part["id"] for part in desk_payload(inspector)["parts"][:2]]
    send(inspector, [label_press(1, first, "defect"), label_press(2, second, "good")])
    assert not inspector.exception, inspector.exception

    manager.run()  # same manager session: the cached results must not hide the new reviews
    assert not manager.exception, manager.exception
    assert metric(manager, "Reviewed") == 2
    assert metric(manager, "Unreviewed") == metric(manager, "Scored parts") - 2
    assert not any("No reviewed parts yet" in info.value for info in manager.info)
    charts = [chart.proto.spec for chart in manager.get("plotly_chart")]
    assert any("FNR" in spec for spec in charts) and any("FPR" in spec for spec in charts)
    rates = next(
        df.value for df in manager.dataframe if "FNR (95% interval, parts)" in df.value.columns
    )
    # One reviewed defect (flagged: 0 missed) and one good part: each rate says how many parts
    # it stands on and how wide its 95% interval is.
    fnr = rates["FNR (95% interval, parts)"].iloc[0]
    assert fnr == "0.0% (0.0%-79.3%), 0 of 1"  # Wilson: one part says little
    assert rates["FPR (95% interval, parts)"].iloc[0].endswith(" of 1")
    assert any("95% intervals" in spec for spec in charts)
    # The manager's other views: review load, defect Pareto, agreement and drift say what they
    # stand on, even this early.
    assert any("Share of parts sent to a human by the decision" in spec for spec in charts)
    assert any("Defect types of 1 defective parts" in spec for spec in charts)
    infos = [info.value for info in manager.info]
    assert any("labelled by two reviewers" in text for text in infos)
    assert any(text.startswith("No drift test yet:") and "good parts" in text for text in infos)


def test_hundreds_of_revisions_render_as_one_model(workbench: Workbench) -> None:
    ids = add_instant_updates(workbench, 300)
    with workbench.factory() as session:
        assert session.get(db.Project, workbench.project_id).active_model_version_id == ids[-1]

    manager = signed_in_app("manager")
    manager.switch_page("pages/dashboard.py").run()

    assert not manager.exception, manager.exception
    labels = {m.label for m in manager.metric}
    assert "Estimated miss rate (FNR), active model v1" in labels
    changes = next(df.value for df in manager.dataframe if "Made by" in df.value.columns)
    assert changes["Model"].tolist() == ["v1.0"]  # instant updates are not listed one by one
    assert any("are revisions too: v1: 300." in c.value for c in manager.caption)
