"""What `/schema` says about each route, declared beside the route (`operation_class=`).

Handlers read their bodies raw and decode them with msgspec (service.http.bodies), so Litestar
cannot see what they accept or answer. Each route names it instead: `documented(...)` makes
the Operation class Litestar instantiates for the route, which replaces the request body, the
responses and the security Litestar inferred. Schemas come from msgspec, the very types that
decode the bodies (strict: unknown fields are refused, `additionalProperties: false`), with
Python's `\\Z` anchors written as ECMA-262 `$`. Answers are described by the documentation
types of service.http.answers; the routes' declarations are in service.http.route_docs, or
beside their body types (admin, subscriptions).

Every answer carries `X-Request-ID`; every refusal is `{"error", "message"}` (HTML on the
claim page's form); 401s of routes behind a bearer token carry `WWW-Authenticate`, and 429s
`Retry-After`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from service.http.answers import PAGE, ErrorBody, Unready

SCHEMA_PATH = "/schema"  # the OpenAPI document and its viewers
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"
LOGOUT_JWT = "application/logout+jwt"
ADMIN_SCHEME = "adminToken"
AGENT = "agentCredential"


@dataclasses.dataclass(frozen=True)
class Access:
    """A route behind the operators' bearer scheme, and the credential scopes it accepts
    (OpenAPI 3.1 lets a non-OAuth requirement list role names: these are ours)."""

    scheme: str
    roles: tuple[str, ...]


ADMIN = Access(ADMIN_SCHEME, ("operator", "tenant_admin"))  # the admin API of a tenant
FEED = Access(ADMIN_SCHEME, ("operator", "tenant_admin", "revocation_feed"))
OPERATOR = Access(ADMIN_SCHEME, ("operator",))
INTROSPECTION = Access(ADMIN_SCHEME, ("operator", "introspection"))
METRICS = Access(ADMIN_SCHEME, ("operator", "metrics"))
SECURITY = Components(
    security_schemes={
        ADMIN_SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="scoped credential `ala_…`",
            description="A scoped credential (`Authorization: Bearer ala_…`), granted by "
            "`POST /admin/credentials` or `authledger access grant`, stored only as its "
            "SHA-256. Each operation lists the scopes it accepts: `operator` passes everywhere "
            "(every tenant); `tenant_admin` only on its own tenant's hosts; `introspection` "
            "only at `/oauth2/introspect` of its tenant, where RFC 7662 §2.1 HTTP Basic "
            "(`client_id:token`) works too; `metrics` only at `/metrics`; `revocation_feed` "
            "only at `GET /admin/revocations` of its tenant. No, unknown or revoked credential: "
            "401 with `WWW-Authenticate`; another scope: 403 `insufficient_scope`; another "
            "tenant: 403 `wrong_tenant`. The deprecated `$AUTHLEDGER_ADMIN_TOKEN` still counts "
            "as an operator credential.",
        ),
        AGENT: SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="API key or at+jwt access token",
            description="A credential issued by E4 or E8",
        ),
    }
)
Source = object  # a type msgspec can describe, or a JSON Schema as a dict
Content = Mapping[str, Source]

# -- requests -------------------------------------------------------------------------------


def json_body(kind: Source) -> dict[str, Source]:
    return {JSON: kind}


def form_body(**fields: Source) -> dict[str, Source]:
    """An urlencoded form with exactly these (required) string fields."""
    properties = {name: schema_dict(kind) for name, kind in fields.items()}
    return {
        FORM: {
            "type": "object",
            "properties": properties,
            "required": list(fields),
            "additionalProperties": False,
        }
    }


def query(name: str, kind: Source, description: str, *, required: bool = True) -> Parameter:
    """A query parameter the handler reads itself (Litestar cannot see it)."""
    return Parameter(
        name=name,
        param_in="query",
        schema=to_schema(kind),
        required=required,
        description=description,
    )


# -- answers --------------------------------------------------------------------------------

_REFUSED = {
    400: "Refused: a malformed request (`invalid_request`) or another of the route's §9 codes",
    401: "Refused: no acceptable credential, token or code",
    403: "Refused: the credential lacks the scope (or acts in another tenant)",
    404: "Refused: no such thing",
    409: "Refused: the state does not allow it (already claimed, in flight)",
    410: "Refused: expired or replaced",
    413: "Refused: the body is larger than the route accepts",
    429: "Refused: a rate limit was hit; wait `Retry-After` seconds",
    503: "Not ready (the reasons are listed for the operator credential only)",
}
_UNAVAILABLE = "Unavailable: the database does not answer; retry after `Retry-After` seconds"
_REQUEST_ID = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    required=True,
    description="The request's id: the sane `X-Request-ID` sent, or a new one; in every log line",
)
_CHALLENGE = {
    "WWW-Authenticate": OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING), required=True, description="RFC 6750"
    )
}
_HEADERS: dict[int, dict[str, OpenAPIHeader]] = {
    429: {
        "Retry-After": OpenAPIHeader(
            schema=Schema(type=OpenAPIType.INTEGER), required=True, description="seconds"
        )
    },
}


@dataclasses.dataclass(frozen=True)
class Answer:
    """One documented status: its description and content by media type."""

    description: str
    content: Content
    links: Mapping[str, Link] | None = None


def ok(content: Content | Source, description: str = "OK", **links: Link) -> Answer:
    """A success; JSON unless `content` names media types."""
    mapping = content if isinstance(content, Mapping) and _is_media_map(content) else None
    return Answer(description, mapping or {JSON: content}, links or None)


def documented(
    *,
    answers: Mapping[int, Answer],
    refusals: Iterable[int] = (),
    refusal_media: Sequence[str] = (JSON,),
    body: Content | None = None,
    body_required: bool = True,
    security: str | Access | None = None,
    parameters: Sequence[Parameter] = (),
    operation_id: str | None = None,
    database: bool = True,
    error_body: Source = ErrorBody,
) -> type[Operation]:
    """The Operation class of one route: Litestar's, with our body, answers and security.
    A route that needs the database (`database`) may also answer 503 `unavailable` with
    `Retry-After` while Postgres is down. `error_body`: the JSON shape of its refusals (the
    v0.6 door's families have their own, service/http/envelopes.py)."""
    request_body = (
        RequestBody(content=_media(body), required=body_required) if body is not None else None
    )
    responses: dict[str, OpenAPIResponse] = {}
    for status, answer in answers.items():
        responses[str(status)] = _response(status, answer.description, answer.content, answer.links)
    if isinstance(security, Access):  # a credential of another scope or tenant: 403
        refusals = sorted({*refusals, 401, 403})
    for status in refusals:
        content: dict[str, Source] = {m: PAGE if m == HTML else error_body for m in refusal_media}
        if status == 503:
            content = {JSON: Unready if error_body is ErrorBody else error_body}
        challenge = _CHALLENGE if status == 401 and security is not None else {}
        responses[str(status)] = _response(status, _REFUSED[status], content, None, challenge)
    if database and "503" not in responses:
        responses["503"] = _response(
            503,
            _UNAVAILABLE,
            {JSON: error_body},
            None,
            _HEADERS[429],  # the same Retry-After
        )
    extra = list(parameters)
    requirement = None
    if isinstance(security, Access):
        requirement = {security.scheme: list(security.roles)}
    elif security is not None:
        requirement = {security: []}

    @dataclasses.dataclass
    class Documented(Operation):
        def __post_init__(self) -> None:
            self.request_body = request_body
            self.responses = dict(responses)
            if requirement is not None:
                self.security = [dict(requirement)]
            if extra:
                self.parameters = [*(self.parameters or []), *extra]
            if operation_id is not None:
                self.operation_id = operation_id

    return Documented


def _response(
    status: int,
    description: str,
    content: Content,
    links: Mapping[str, Link] | None,
    more: Mapping[str, OpenAPIHeader] | None = None,
) -> OpenAPIResponse:
    """One answer; every answer carries `X-Request-ID`. (E5 and E8 answer 401 for a wrong
    claim token or code without a `WWW-Authenticate`: no HTTP authentication is involved.)"""
    headers = {"X-Request-ID": _REQUEST_ID, **_HEADERS.get(status, {}), **(more or {})}
    return OpenAPIResponse(
        description=description,
        content=_media(content) if content else None,
        headers=dict(headers),
        links=dict(links) if links else None,
    )


def _media(content: Content) -> dict[str, OpenAPIMediaType]:
    return {media: OpenAPIMediaType(schema=to_schema(kind)) for media, kind in content.items()}


def _is_media_map(value: Mapping[Any, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and "/" in k for k in value)


# -- msgspec's JSON Schema as Litestar's Schema objects ---------------------------------------

_FIELDS = {f.metadata.get("alias", f.name): f.name for f in dataclasses.fields(Schema)}
_ONE = {"items", "not", "additionalProperties", "contains", "propertyNames"}
_MANY = {"anyOf", "oneOf", "allOf", "prefixItems"}
_BY_NAME = {"properties", "patternProperties"}
_END = re.compile(r"\\Z$")


def schema_dict(kind: Source) -> dict[str, Any]:
    """A JSON Schema with every `$ref` inlined (Litestar rebuilds the components itself)."""
    if isinstance(kind, dict):
        return kind
    found = msgspec.json.schema(kind)
    definitions: dict[str, Any] = found.pop("$defs", {})
    inlined: dict[str, Any] = _inline(found, definitions)
    return inlined


def _inline(node: Any, definitions: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(definitions[node["$ref"].rsplit("/", 1)[1]], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node


def to_schema(kind: Source) -> Schema:
    return _convert(schema_dict(kind))


def _convert(node: Mapping[str, Any]) -> Schema:
    return Schema(**{_FIELDS[key]: _value(key, value) for key, value in node.items()})


def _value(key: str, value: Any) -> Any:
    if key in _ONE and isinstance(value, dict):
        return _convert(value)
    if key in _MANY:
        return [_convert(v) for v in value]
    if key in _BY_NAME:
        return {name: _convert(v) for name, v in value.items()}
    if key == "type":
        return [OpenAPIType(v) for v in value] if isinstance(value, list) else OpenAPIType(value)
    if key == "format":
        return OpenAPIFormat(value)
    if key == "pattern":
        return _END.sub("$", value)  # ECMA-262 `$` is the end of the input, like `\Z`
    return value


def refined(kind: Source, **properties: Mapping[str, Any]) -> dict[str, Any]:
    """`kind`'s schema with some properties said more precisely (what the handler checks past
    decoding, e.g. that a URL is https): merged into each alternative of a nullable field."""
    schema = schema_dict(kind)
    for name, extra in properties.items():
        field = schema["properties"][name]
        for alternative in field.get("anyOf", [field]):
            if alternative.get("type") == "string":
                alternative.update(extra)
            elif alternative.get("type") == "array":
                alternative["items"].update(extra)
    return schema


# Trusted issuers' and webhooks' URLs: https (the handlers also refuse a user, a query or a
# fragment; plain http only on loopback, in development).
HTTPS_URL: dict[str, Any] = {"pattern": "^https://"}


def one_of(*kinds: Source) -> dict[str, Any]:
    """Any one of several answer shapes (msgspec describes unions of untagged Structs only
    one at a time)."""
    return {"anyOf": [schema_dict(kind) for kind in kinds]}


def link_body(operation_id: str, **fields: str) -> Link:
    """The next call's body takes these fields of this answer (`name=json pointer`)."""
    return Link(
        operation_id=operation_id,
        request_body={name: f"$response.body#/{pointer}" for name, pointer in fields.items()},
    )


def link_parameters(operation_id: str, **parameters: str) -> Link:
    """The next call's parameters (`path.name`, `query.name`) take these fields of this answer."""
    return Link(
        operation_id=operation_id,
        parameters={name: f"$response.body#/{pointer}" for name, pointer in parameters.items()},
    )
