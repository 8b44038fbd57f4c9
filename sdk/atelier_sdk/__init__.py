from atelier_sdk.client import Client
from atelier_sdk.errors import (
    ApiError,
    AuthenticationError,
    InsufficientCredits,
    NotFound,
    QueueFull,
    RateLimited,
    ValidationError,
)

__all__ = [
    "ApiError",
    "AuthenticationError",
    "Client",
    "InsufficientCredits",
    "NotFound",
    "QueueFull",
    "RateLimited",
    "ValidationError",
]
