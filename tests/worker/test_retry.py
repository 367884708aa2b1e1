"""The one backoff every retry loop of the job service uses (pure)."""

from __future__ import annotations

from jobservice.retry import Backoff


def test_delays_double_up_to_the_cap_and_start_again_after_a_success() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.05


def test_the_first_delay_and_the_cap_can_be_chosen() -> None:
    backoff = Backoff(first=0.1, cap=0.3)
    assert [backoff.next() for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
