"""The API docs UI, whole from this app: `/schema` (and `/schema/swagger`) is Swagger UI, whose
script and style (service/http/swagger_ui/, swagger-ui-dist 5.36.0, unmodified) are served
under `/schema-assets/`, so the page works without a network (Litestar's viewers load theirs
from a CDN). `/schema/openapi.json` and `/schema/openapi.yaml` are the document itself.
"""

from __future__ import annotations

from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/schema-assets"
SWAGGER_UI = Path(__file__).with_name("swagger_ui")


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Swagger UI at the root and at /swagger (assets from this app, no favicon from a CDN)."""
    return [
        SwaggerRenderPlugin(
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            path=["/", "/swagger"],
            favicon="",
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def assets_router() -> Router:
    """`GET /schema-assets/<file>`: Swagger UI's files, cacheable for a day."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[SWAGGER_UI],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86_400),
        name="schema-assets",
    )
