"""The one catalogue of error codes, used by the API, the WebSocket, webhooks and the worker
(the API edge turns exceptions into these bodies: api/exceptions.py)."""

from __future__ import annotations

from typing import Any

CATALOGUE: dict[str, tuple[int, str]] = {
    "validation_error": (400, "The request has invalid fields."),
    "malformed_request": (400, "The request body could not be parsed."),
    "not_authenticated": (401, "Authentication is required: a session or an API key."),
    "authentication_failed": (401, "The API key is invalid or revoked."),
    "permission_denied": (403, "You may not do this."),
    "insufficient_scope": (403, "This key or access token was not granted the scope this call needs."),
    "insufficient_credits": (402, "Not enough credits for this generation."),
    "model_not_in_plan": (403, "Your plan does not include this model."),
    "relax_not_allowed": (403, "Your plan does not include relax mode."),
    "private_not_allowed": (403, "Your plan does not include private mode."),
    "account_suspended": (403, "Your account is suspended: it cannot submit generations."),
    "prompt_blocked": (400, "The prompt contains a blocked term."),
    "image_too_large": (400, "The result would be larger than the model allows."),
    "sampler_not_supported": (400, "The chosen model cannot use this sampler."),
    "lora_not_found": (400, "There is no LoRA of that name (see GET /api/v1/models, loras)."),
    "not_found": (404, "No such resource."),
    "method_not_allowed": (405, "This method is not allowed here."),
    "generation_finished": (409, "The generation has already finished."),
    "idempotency_key_reused": (409, "This Idempotency-Key was used with a different request."),
    "idempotency_key_in_use": (409, "A request with this Idempotency-Key is still being processed."),
    "request_too_large": (413, "The request body is larger than this server accepts."),
    "unsupported_media_type": (415, "This content type is not supported."),
    "rate_limited": (429, "Too many requests."),
    "queue_full": (429, "You have as many jobs waiting as your plan allows."),
    "billing_disabled": (503, "Billing is not configured on this server."),
    # Submission refused while the model's circuit is open (generations/circuits.py); a worker
    # that cannot load a model records the same code on the generation.
    "model_unavailable": (503, "The model is unavailable right now; try again later."),
    # The web tier shed the request: too many at once, or the database or Redis too slow
    # (ops/load_shedding.py); always with Retry-After.
    "overloaded": (503, "The service is busy right now; try again shortly."),
    "invalid_signature": (400, "The webhook signature is missing, invalid or too old."),
    "internal_error": (500, "Something went wrong on our side."),
    # Failures recorded on a generation by the worker.
    "input_missing": (500, "The input image is no longer available."),
    "lora_incompatible": (500, "The LoRA does not fit the model (made for another model family?)."),
    "generation_failed": (500, "The image could not be generated."),
    "worker_lost": (500, "The worker running this generation was lost."),
    "timeout": (500, "The generation took longer than its pool allows."),
    "out_of_memory": (500, "The image did not fit in the GPU memory even with every memory saving on."),
    "retries_exhausted": (500, "The generation kept failing on a temporary error."),
}


class ApiError(Exception):
    def __init__(
        self,
        code: str,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.code = code
        self.headers = headers or {}
        self.status, default_message = CATALOGUE[code]
        self.message = message or default_message
        self.details = details or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def error_body(
    code: str, message: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message or CATALOGUE[code][1], "details": details or {}}}
