"""``FaultResult.within_loss_bound``: when a run may lose acknowledged writes (Redis without
AOF, docs/durability.md#what-a-crash-loses), which reports pass. Hand-made reports: the
real runs are tests/jepsen's."""

from __future__ import annotations

from stockguard.verify.checker import Anomaly, FinalState, Report
from stockguard.verify.faults import FaultResult, FaultRun
from stockguard.verify.history import History


def result(lost: int, bound: int, *anomalies: Anomaly, oversold: int = 0) -> FaultResult:
    report = Report(anomalies=list(anomalies), acknowledged_lost=lost, oversold_units=oversold)
    final = FinalState(reservations={}, stock={}, movements={}, read_at_ms=0)
    run = FaultRun("redis-restart", "postgres", "redis", aof="no")
    return FaultResult(run, report, History(), final, 1, 0.0, loss_bound=bound)


LOST = Anomaly("lost", "op 7: hold r1 (order o1) acknowledged, not in the final state")
BELOW = Anomaly("bounds", "V0: reserved 3 outside [5, 9] (acknowledged holds still held, …)")
ABOVE = Anomaly("bounds", "V0: reserved 12 outside [5, 9] (acknowledged holds still held, …)")


def test_losses_within_the_bound_with_the_anomalies_they_explain_pass() -> None:
    assert result(0, 0).within_loss_bound()
    assert result(
        1, 3, LOST, BELOW, Anomaly("replay", "order o1 created 2 times")
    ).within_loss_bound()
    assert result(
        2, 2, LOST, Anomaly("ended-once", "r2 seen held after it had ended")
    ).within_loss_bound()


def test_more_lost_than_the_bound_fails() -> None:
    assert not result(4, 3, LOST).within_loss_bound()


def test_oversold_fails_whatever_the_bound() -> None:
    assert not result(1, 5, LOST, oversold=1).within_loss_bound()


def test_anomalies_no_loss_explains_fail() -> None:
    assert not result(1, 5, LOST, ABOVE).within_loss_bound()  # more held than attempted
    assert not result(1, 5, LOST, Anomaly("bank", "V0: received 40 != 39")).within_loss_bound()
    assert not result(1, 5, LOST, Anomaly("audit", "violations")).within_loss_bound()
    assert not result(0, 5, BELOW).within_loss_bound()  # units missing, yet nothing lost
