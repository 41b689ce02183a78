"""The errors the server answers with, each an HTTP status in OpenAI's error shape.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "input", "code": "..."}}

| class | status | type | code |
|---|---|---|---|
| `InvalidJSONError` | 400 | invalid_request_error | invalid_json |
| `UnknownParameterError` | 400 | invalid_request_error | unknown_parameter |
| `UnsupportedParameterError` | 400 | invalid_request_error | unsupported_parameter |
| `InvalidRequestError` | 400 | invalid_request_error | invalid_value (or as raised) |
| `AuthenticationError` | 401 | invalid_request_error | invalid_api_key |
| `NotFoundError` | 404 | invalid_request_error | not_found / model_not_found |
| `PayloadTooLargeError` | 413 | invalid_request_error | request_too_large |
| `RateLimitError` | 429 | requests | rate_limit_exceeded / concurrency_limit_exceeded (`Retry-After`) |
| `ServerError` | 500 | server_error | server_error |

A `previous_response_id` made with another key is `NotFoundError` (its existence is not
revealed). Nothing the server raises reaches a client as a traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "InvalidJSONError",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServeError",
    "ServerError",
    "UnknownParameterError",
    "UnsupportedParameterError",
]


class ServeError(Exception):
    """An error answered to the client: `status`, and the body `{"error": {...}}`."""

    status: int = 500
    type: str = "server_error"
    default_code: str | None = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ServeError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_value"


class InvalidJSONError(InvalidRequestError):
    default_code = "invalid_json"


class UnknownParameterError(InvalidRequestError):
    default_code = "unknown_parameter"


class UnsupportedParameterError(InvalidRequestError):
    default_code = "unsupported_parameter"


class AuthenticationError(ServeError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class NotFoundError(ServeError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class PayloadTooLargeError(ServeError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(ServeError):
    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        seconds = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, headers={"Retry-After": str(seconds)})
        self.retry_after = seconds


class ServerError(ServeError):
    status = 500
