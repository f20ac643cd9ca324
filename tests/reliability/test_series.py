"""series.py's memory figures from the generator's samples (no host needed): what test_load judges its budget on."""

from __future__ import annotations

import series
from test_load import STACK_RSS_BUDGET_MIB


def sample(t: float, **rss_kb: int) -> dict:
    return {"t": t, "rss_kb": {label.replace("_", " "): kb for label, kb in rss_kb.items()}}


def test_the_service_rss_sums_nginx_and_every_gunicorn_process_and_nothing_else() -> None:
    one = sample(0, nginx_master_10=5_000, nginx_worker_11=6_000, gunicorn_master_20=40_000, gunicorn_worker_21=100_000,
                 gunicorn_worker_22=110_000, sshd_30=9_000)
    assert series.stack_rss_kb(one) == 261_000


def test_the_peak_is_the_largest_sum_and_a_grown_stack_is_over_the_budget() -> None:
    samples = [sample(100, gunicorn_master_1=40_000, gunicorn_worker_2=100_000),
               sample(102, gunicorn_master_1=40_000, gunicorn_worker_2=460_000),
               sample(104, nginx_master_3=5_000)]  # no gunicorn: between masters, not counted
    peak_kb, at, counted = series.stack_rss_peak(samples, t0=100)
    assert (peak_kb, at, counted) == (500_000, 2, 2)
    assert peak_kb > STACK_RSS_BUDGET_MIB * 1024


def test_oom_kills_are_the_counter_difference_and_unknown_when_never_read() -> None:
    assert series.oom_kills_during([{"container_oom_kills": 3}, {}, {"container_oom_kills": 4}]) == 1
    assert series.oom_kills_during([{"container_oom_kills": 3}, {"container_oom_kills": 3}]) == 0
    assert series.oom_kills_during([{}, {}]) is None
