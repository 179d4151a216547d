"""The dashboard: reviews made in the Review page show up in its counts and charts."""

from __future__ import annotations

from apptest_support import Workbench, signed_in_app
from desk_presses import desk_payload, label_press, send


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
