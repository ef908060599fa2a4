"""Example counts of property tests that set their own, scaled by the hypothesis profile.

A test whose examples cost more (or less) than most sets its count for the default ``ci``
profile with :func:`examples`; the other profiles (``conftest.py``) scale it as their own
``max_examples`` scales ``ci``'s, so that ``HYPOTHESIS_PROFILE=thorough`` explores these
tests too instead of keeping their count.
"""

from hypothesis import settings

#: ``max_examples`` of the ``ci`` profile, which the counts given to :func:`examples` are for.
CI_EXAMPLES = 40


def examples(ci_count: int) -> int:
    """``ci_count`` under the ``ci`` profile; under another, as many times more as its
    ``max_examples`` is than ``ci``'s, but no more than it (or ``ci_count``, if larger)."""
    most = settings.default.max_examples
    return min(max(1, round(ci_count * most / CI_EXAMPLES)), max(ci_count, most))
