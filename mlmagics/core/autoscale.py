"""Capacity planning: how many replicas a target request rate needs (the seed's formula).

    concurrentRequests = targetRps * reqTime / targetUtilization
    replicas = ceil(concurrentRequests / maxReqPerContainer)

>>> replicas_needed(target_rps=20, request_time_s=10, max_requests_per_container=1, target_utilization=0.7)
286
"""

from __future__ import annotations

import math

from .errors import UserError


def replicas_needed(
    target_rps: float, request_time_s: float, max_requests_per_container: int = 1, target_utilization: float = 0.7
) -> int:
    """Replicas that serve `target_rps` requests per second taking `request_time_s` each, with every
    replica handling `max_requests_per_container` at once and kept `target_utilization` busy.

    `target_utilization` is a fraction (0.7) or v1's percent (70).
    """
    if target_utilization > 1:
        target_utilization /= 100
    for name, value in (
        ("target_rps", target_rps),
        ("request_time_s", request_time_s),
        ("max_requests_per_container", max_requests_per_container),
        ("target_utilization", target_utilization),
    ):
        if value <= 0:
            raise UserError(f"{name} must be greater than zero, got {value}")
    if target_utilization > 1:
        raise UserError("target_utilization must be a fraction (0.7) or a percent (70) of at most 100")
    concurrent_requests = target_rps * request_time_s / target_utilization
    return max(1, math.ceil(concurrent_requests / max_requests_per_container - 1e-9))
