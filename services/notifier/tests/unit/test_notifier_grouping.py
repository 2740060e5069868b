"""Grouping of identical alerts: a storm becomes one message now and one summary per window."""

from __future__ import annotations

from tradeflow_notifier.domain.grouping import admit, group_key, summary_due

from services.notifier.tests.unit.notifier_samples import T0, alert

S = 1_000_000_000
WINDOW = 60 * S


def test_a_storm_of_500_identical_alerts_is_one_message_now_and_one_summary_after_the_window():
    group, delivered, summaries = None, 0, []
    for i in range(500):
        admission = admit(group, alert(message=f"failure {i}", ts_event=T0 + i * 10_000_000), WINDOW)
        group = admission.group
        delivered += admission.deliver
        if admission.summary:
            summaries.append(admission.summary)
    assert delivered == 1 and summaries == []
    assert group.suppressed == 499 and group.last.message == "failure 499"
    assert not summary_due(group, T0 + WINDOW - 1) and summary_due(group, T0 + WINDOW)


def test_an_alert_after_the_window_is_delivered_and_closes_the_window_with_its_summary():
    first = admit(None, alert(ts_event=T0), WINDOW)
    second = admit(first.group, alert(ts_event=T0 + S), WINDOW)
    third = admit(second.group, alert(ts_event=T0 + WINDOW), WINDOW)
    assert (first.deliver, second.deliver, third.deliver) == (True, False, True)
    assert third.summary is not None and third.summary.suppressed == 1
    assert third.group.window_start == T0 + WINDOW and third.group.suppressed == 0
    quiet = admit(None, alert(ts_event=T0), WINDOW)
    assert admit(quiet.group, alert(ts_event=T0 + WINDOW), WINDOW).summary is None  # nothing was suppressed


def test_identity_is_service_kind_severity_and_labels_not_the_text_or_the_suppressed_count():
    base = alert()
    assert group_key(base) == group_key(alert(message="other text", labels={"exchange": "binance", "suppressed": "3"}))
    assert group_key(base) != group_key(alert(labels={"exchange": "okx"}))
    assert group_key(base) != group_key(alert(severity="warning"))
    assert group_key(base) != group_key(alert(service="candle-builder"))


def test_a_late_alert_inside_the_window_is_counted_and_the_newest_stays_the_sample():
    opened = admit(None, alert(message="new", ts_event=T0 + 5 * S), WINDOW)
    late = admit(opened.group, alert(message="old", ts_event=T0), WINDOW)
    assert not late.deliver and late.group.suppressed == 1 and late.group.last.message == "new"
