"""The soak's short version (bench/soak.py runs the same code for 5 minutes)."""

from soak_helpers import MAX_GROWTH_MIB, report, soak


def test_the_gateway_survives_a_daemon_killed_again_and_again(tmp_path):
    r = soak(tmp_path, seconds=60, clients=32, kill_every=15)
    print(report(r))
    assert r.kills >= 3 and r.acked > 100, report(r)  # it did soak
    assert r.unexpected == {}, report(r)
    assert r.missing == [], report(r)
    assert r.growth < MAX_GROWTH_MIB, report(r)
