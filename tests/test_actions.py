"""gan.training.actions: the periodic work of a run."""

import pytest

from gan.training import actions


@pytest.mark.parametrize("step,every,offset,expected", [
    (0, 100, 1, 1), (1, 100, 1, 101), (100, 100, 1, 101), (0, 1000, 0, 1000),
    (999, 1000, 0, 1000), (1000, 1000, 0, 2000)])
def test_next_boundary(step, every, offset, expected):
    assert actions.next_boundary(step, every, offset) == expected
