"""Control-plane errors: the runtime's envelope plus the management API's named errors."""
from __future__ import annotations

from liveml_runtime.errors import (  # re-exported for the control plane (__all__)
    InferenceFailure,
    InferenceInvalidInput,
    Internal,
    InvalidArgument,
    LiveMLError,
    MalformedRequestBody,
    RequestEntityTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    error_class,
)

PermissionDenied = error_class("PermissionDenied", 403, "PERMISSION_DENIED")
NotFound = error_class("NotFound", 404, "NOT_FOUND")
LiveDeploymentNotFound = error_class("LiveDeploymentNotFound", 404, "NOT_FOUND")
ObjectiveNotFound = error_class("ObjectiveNotFound", 404, "NOT_FOUND")
SubmissionNotFound = error_class("SubmissionNotFound", 404, "NOT_FOUND")
ReleaseNotFound = error_class("ReleaseNotFound", 404, "NOT_FOUND")
ArtifactNotFound = error_class("ArtifactNotFound", 404, "NOT_FOUND")
ProfileNotFound = error_class("ProfileNotFound", 400, "INVALID_ARGUMENT")
ObjectiveAlreadyExists = error_class("ObjectiveAlreadyExists", 409, "CONFLICT")
ReleaseVersionAlreadyExists = error_class("ReleaseVersionAlreadyExists", 409, "CONFLICT")
SubmissionAlreadyExists = error_class("SubmissionAlreadyExists", 409, "CONFLICT")
ApiNameAlreadyExists = error_class("ApiNameAlreadyExists", 409, "CONFLICT")
NoReleaseWithTag = error_class("NoReleaseWithTag", 400, "INVALID_ARGUMENT")
AmbiguousName = error_class("AmbiguousName", 409, "CONFLICT")
InvalidModelArtifact = error_class("InvalidModelArtifact", 400, "INVALID_ARGUMENT")
MethodNotAllowed = error_class("MethodNotAllowed", 405, "INVALID_ARGUMENT")
UnsupportedMediaType = error_class("UnsupportedMediaType", 415, "INVALID_ARGUMENT")
ReplicaFailed = error_class("ReplicaFailed", 502, "INTERNAL")
ThreadCountTooHigh = error_class("ThreadCountTooHigh", 400, "INVALID_ARGUMENT")
InvalidGpuCount = error_class("InvalidGpuCount", 400, "INVALID_ARGUMENT")
GpuTypeNotAvailable = error_class("GpuTypeNotAvailable", 400, "INVALID_ARGUMENT")
CrossSiteRequestRefused = error_class("CrossSiteRequestRefused", 403, "PERMISSION_DENIED")
DuplicateJsonKey = error_class("DuplicateJsonKey", 400, "INVALID_ARGUMENT")
TokenNotFound = error_class("TokenNotFound", 404, "NOT_FOUND")
CannotRevokeAdminToken = error_class("CannotRevokeAdminToken", 409, "CONFLICT")


class StartupRefused(Exception):
    """The control plane refuses to start on this home (a message for the operator, never a
    REST answer); ``parameters`` say which home and, for ``HomeInUse``, which server holds it."""

    def __init__(self, message: str, **parameters: object) -> None:
        super().__init__(message)
        self.message = message
        self.parameters = parameters


class HomeInUse(StartupRefused):
    """Another control plane runs on the home."""


class HomeNotPrivate(StartupRefused):
    """Others could write the home, or it is another user's."""


__all__ = [  # the runtime's errors re-exported (explicitly, for mypy), and this module's own
    "InferenceFailure", "InferenceInvalidInput", "Internal", "InvalidArgument", "LiveMLError",
    "MalformedRequestBody", "RequestEntityTooLarge", "ServiceUnavailable", "TooManyRequests",
    "Unauthorized", "error_class", "PermissionDenied", "NotFound", "LiveDeploymentNotFound",
    "ObjectiveNotFound", "SubmissionNotFound", "ReleaseNotFound", "ArtifactNotFound",
    "ProfileNotFound", "ObjectiveAlreadyExists", "ReleaseVersionAlreadyExists",
    "SubmissionAlreadyExists", "ApiNameAlreadyExists", "NoReleaseWithTag", "AmbiguousName",
    "InvalidModelArtifact", "MethodNotAllowed", "UnsupportedMediaType", "ReplicaFailed",
    "ThreadCountTooHigh", "InvalidGpuCount", "GpuTypeNotAvailable", "CrossSiteRequestRefused",
    "DuplicateJsonKey", "TokenNotFound", "CannotRevokeAdminToken", "StartupRefused", "HomeInUse",
    "HomeNotPrivate",
]
