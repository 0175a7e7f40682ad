"""What `POST /api/privacy/erasures` accepts: one subject of one tenant, and whether to suppress it.

Plain Python and pydantic, no HTTP: the blueprint turns the errors into a 400 with one reason
per field, in the API's error shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from shared.domain.events import ShortText, TenantId
from shared.domain.privacy import Subject

__all__ = ["ERASURE_ID", "ErasureBody", "InvalidErasureRequestError", "parse_erasure_request"]

ERASURE_ID: Final = re.compile(r"er_[A-Za-z0-9_-]{20}")
"""What `privacy.erasure.new_erasure_id` makes (matched whole, with `fullmatch`)."""


@dataclass(frozen=True, slots=True)
class InvalidErasureRequestError(ValueError):
    """The body is not a valid erasure request; `details` has one `{field, message, type}` per problem."""

    message: str
    details: tuple[dict[str, str], ...] = ()

    def __str__(self) -> str:
        return self.message


class ErasureBody(BaseModel):
    """`{tenantId, userId | anonymousId, suppress?}`: exactly one identifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId = Field(alias="tenantId")
    user_id: ShortText | None = Field(None, alias="userId")
    anonymous_id: ShortText | None = Field(None, alias="anonymousId")
    suppress: StrictBool = True
    """False: delete only (events the subject sends afterwards are kept)."""

    @model_validator(mode="after")
    def _one_identifier(self) -> ErasureBody:
        if (self.user_id is None) == (self.anonymous_id is None):
            raise ValueError("give exactly one of userId and anonymousId")
        return self

    def subject(self) -> Subject:
        if self.user_id is not None:
            return Subject(self.tenant_id, "userId", self.user_id)
        assert self.anonymous_id is not None  # the validator saw to it
        return Subject(self.tenant_id, "anonymousId", self.anonymous_id)


def parse_erasure_request(body: bytes) -> ErasureBody:
    """The request read from a JSON body; `InvalidErasureRequestError` says what is wrong."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidErasureRequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidErasureRequestError("request body must be a JSON object")
    try:
        return ErasureBody.model_validate(document)
    except ValidationError as exc:
        details = tuple(_detail(error) for error in exc.errors(include_url=False))
        raise InvalidErasureRequestError("the erasure request is invalid", details) from None


def _detail(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        message = f"unknown field {field!r}"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    # Never the value itself: it may be the identifier being erased.
    return {"field": field, "message": message, "type": str(error["type"])}
