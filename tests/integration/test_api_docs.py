"""`/docs` and `/redoc` work without internet: every asset they load comes from the app, and
the OpenAPI document declares the operator's bearer scheme so "Authorize" applies the token."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from refundbridge.api.docs import STATIC

ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def _referenced(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_only_assets_the_app_serves(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    urls = _referenced(answer.text)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from outside the app"
        assert not url.startswith("//"), f"{page} loads {url} from another host"
        asset = client.get(urljoin(page, url))
        assert asset.status_code == 200, url
        suffix = url[url.rfind("."):]
        assert asset.headers["content-type"].startswith(ASSET_TYPES[suffix]), url
        assert asset.content == (STATIC / url.rsplit("/", 1)[1]).read_bytes()
    # No script or stylesheet the page runs names a host: nothing is fetched from a CDN,
    # and the browser is told to refuse what a bundle might still ask for elsewhere.
    assert "cdn." not in answer.text and "googleapis" not in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:" in policy


def test_the_swagger_page_starts_swagger_ui_on_our_openapi(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "SwaggerUIBundle(" in html and "'/openapi.json'" in html
    assert "persistAuthorization" in html


def test_the_vendored_bundles_are_the_real_libraries() -> None:
    swagger = (STATIC / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    redoc = (STATIC / "redoc.standalone.js").read_text(encoding="utf-8")
    assert "SwaggerUIBundle" in swagger and len(swagger) > 1_000_000
    assert "Redoc" in redoc and len(redoc) > 500_000
    assert ".swagger-ui" in (STATIC / "swagger-ui.css").read_text(encoding="utf-8")


def test_openapi_declares_the_operator_bearer_scheme_on_operator_routes(
        client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["operatorToken"] == {
        "type": "http", "scheme": "bearer",
        "description": schemes["operatorToken"]["description"]}
    assert "operator_tokens" in schemes["operatorToken"]["description"]
    secured = {path for path, item in schema["paths"].items() for op in item.values()
               if {"operatorToken": []} in op.get("security", [])}
    assert "/v1/cases/{case_id}" in secured
    # Webhooks are authenticated by their signatures, not the operator's token.
    assert not any(path.startswith("/webhooks") for path in secured)


def test_the_scheme_is_documentation_only_our_check_still_decides(client: TestClient) -> None:
    assert client.get("/v1/cases/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/cases/x").status_code == 401
