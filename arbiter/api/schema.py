"""What the API accepts and answers, as OpenAPI documents it: request bodies, the
error bodies of every 4xx and 503, /verdict's real 200, and each route's codes.

Schemathesis checks the running API against this in CI: every status an operation
can return is declared here, with the body it really has.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from arbiter.api.writes import MAX_BODY


class EventIn(BaseModel):
    """A keepalived notify call: arbiter-notify sends TYPE NAME STATE PRIORITY."""

    cluster: str = Field(min_length=1, max_length=64, description="the cluster's name")
    node: str = Field(min_length=1, max_length=64,
                      description="the reporting node (a node token may report only itself)")
    type: Literal["INSTANCE", "GROUP"] = Field(
        "INSTANCE", description="keepalived's $1: a vrrp_instance or a vrrp_sync_group")
    instance: str = Field(min_length=1, max_length=128,
                          description="keepalived's $2: the instance or group name")
    state: Literal["MASTER", "BACKUP", "FAULT", "STOP", "DELETED"] = Field(
        description="keepalived's $3: the state it entered")
    priority: int | None = Field(None, ge=0, le=255, description="keepalived's $4")


class ReleaseIn(BaseModel):
    reason: str | None = Field(None, max_length=500)


class PauseIn(BaseModel):
    model_config = {"extra": "forbid"}
    cluster: str | None = Field(None, max_length=64,
                                description="the cluster to pause; none: every cluster")
    seconds: float = Field(gt=0, description="how long; at most [arbiter] max_pause")
    reason: str = Field(min_length=1, max_length=500, description="why: kept for the audit")


class ResumeIn(BaseModel):
    model_config = {"extra": "forbid"}
    cluster: str | None = Field(None, max_length=64,
                                description="the cluster's pause; none: every pause in force")


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, naming the field or parameter")


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: str = Field(description="every bad field, 'where: why', joined by '; '")
    errors: list[FieldError] = Field(default_factory=list)


class VerdictOut(BaseModel):
    cluster: str
    node: str
    vip: str | None
    verdict: Literal["allow", "deny", "abstain"]
    reason: str
    holder: str | None = Field(description="the node clients should reach for the VIP(s)")
    incident: int | None = Field(description="the incident that denies this node, if any")
    epoch: int = Field(description="increases whenever the cluster's verdicts change")
    observed_at: str | None
    term: int | None = Field(
        None, description="[ha] only: the highest leader term this arbiter has seen for the "
        "cluster's shard; arbiter-gate ignores an answer with a lower term than one it has "
        "seen. The text format puts it after the verdict: 'allow 7'")


def error_doc(description: str, model: type[BaseModel] = ErrorOut) -> dict[str, Any]:
    return {"model": model, "description": description}


INVALID = {422: error_doc("a parameter or the body is invalid; the detail names it",
                     ValidationErrorOut)}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **INVALID,
    401: error_doc("protect_reads is on and no valid bearer token was sent"),
    403: error_doc("protect_reads is on and no API token is configured"),
}
STORE_ERRORS: dict[int | str, dict[str, Any]] = {503: error_doc("database unavailable")}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **INVALID, **STORE_ERRORS,
    401: error_doc("no, malformed or unknown bearer token"),
    403: error_doc("the token may not do this"),
    404: error_doc("unknown cluster, node or incident"),
    413: error_doc(f"body larger than {MAX_BODY} bytes"),
}
VERDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": VerdictOut, "description": "the verdict; with format=text or Accept: "
          "text/plain, the word alone",
          "content": {"text/plain": {"schema": {"type": "string",
                                                "enum": ["allow\n", "deny\n", "abstain\n"]}}}},
    **READ_ERRORS,
    404: error_doc("unknown cluster or node, or a VIP not of that cluster"),
}


def _qparam(name: str, desc: str, required: bool = False, enum: list[str] | None = None,
            ip: bool = False) -> dict:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 64}
    if enum:
        schema["enum"] = enum
    if ip:
        schema = {"anyOf": [{"type": "string", "format": "ipv4"},
                            {"type": "string", "format": "ipv6"}]}
    return {"name": name, "in": "query", "required": required, "description": desc,
            "schema": schema}


VERDICT_PARAMS = [
    _qparam("cluster", "cluster name", True),
    _qparam("node", "node name in that cluster", True),
    _qparam("vip", "one of the cluster's VIPs (optional): with exclusive verdicts, the "
            "answer for that VIP (a dual-master node's gate asks per vrrp_instance)", ip=True),
    _qparam("format", "text: the verdict word alone (also with Accept: text/plain)",
            enum=["json", "text"]),
]


def body_doc(model: type[BaseModel], required: bool) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}
