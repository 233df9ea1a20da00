"""Approval channels: tell people what rcaflow found and let them approve or reject its actions."""

from executors.notify.base import CHANNELS, ApprovalChannel, MessageRef, channel_class
from executors.notify.errors import NotifyError, RateLimitedError
from executors.notify.limiter import RateLimiter

__all__ = [
    "CHANNELS",
    "ApprovalChannel",
    "MessageRef",
    "NotifyError",
    "RateLimitedError",
    "RateLimiter",
    "channel_class",
]
