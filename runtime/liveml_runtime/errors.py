"""The platform's error envelope, shared by the replica runtime and the control plane.

Every error leaves a server as ``{"errorCode", "errorName", "errorInstanceId", "parameters"}``
with an HTTP status chosen by the error's class, never a bare 500 for bad input.
"""
from __future__ import annotations

import uuid
from typing import Any


class LiveMLError(Exception):
    """An error that maps to one HTTP status and one envelope."""

    status: int = 500
    code: str = "INTERNAL"
    name: str = "Internal"

    def __init__(self, message: str = "", /, **parameters: Any) -> None:
        super().__init__(message or self.name)
        self.message = message or self.name
        self.parameters = parameters

    def envelope(self) -> dict[str, Any]:
        params = {"message": self.message, **self.parameters}
        return {
            "errorCode": self.code,
            "errorName": self.name,
            "errorInstanceId": str(uuid.uuid4()),
            "parameters": params,
        }


def error_class(name: str, status: int, code: str) -> type[LiveMLError]:
    """Make a named error class (one line per platform error, below and in the core)."""
    return type(name, (LiveMLError,), {"status": status, "code": code, "name": name})


InvalidArgument = error_class("InvalidArgument", 400, "INVALID_ARGUMENT")
MalformedRequestBody = error_class("MalformedRequestBody", 422, "INVALID_ARGUMENT")
InferenceInvalidInput = error_class("InferenceInvalidInput", 400, "INVALID_ARGUMENT")
InferenceFailure = error_class("InferenceFailure", 400, "CUSTOM_CLIENT")
RequestEntityTooLarge = error_class("RequestEntityTooLarge", 413, "REQUEST_ENTITY_TOO_LARGE")
ServiceUnavailable = error_class("ServiceUnavailable", 503, "SERVICE_UNAVAILABLE")
TooManyRequests = error_class("TooManyRequests", 429, "TOO_MANY_REQUESTS")
Internal = error_class("Internal", 500, "INTERNAL")
Unauthorized = error_class("Unauthorized", 401, "UNAUTHORIZED")
NotFound = error_class("NotFound", 404, "NOT_FOUND")
MethodNotAllowed = error_class("MethodNotAllowed", 405, "INVALID_ARGUMENT")


def invalid_input(kind: str, message: str, **details: Any) -> LiveMLError:
    """An ``InferenceInvalidInput`` whose ``parameters.errorType.type`` is ``kind``.

    ``kind`` is one of requiredValueMissing, typeMismatch, unknownInputName, invalidTabularFormat,
    emptyRows, tooManyColumns, sparseRows, tooDeep, duplicateKey, nonFiniteOutput.
    """
    return InferenceInvalidInput(message, errorType={"type": kind, **details})
