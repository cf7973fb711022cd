"""The OpenAPI document renders, every reference in it resolves, and it documents the
operator endpoints for recalls and the evaluate preview."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import APIRouter, Request
from fastapi.responses import Response

from refundbridge.api.routes.webhooks import UnresolvedRoute


def test_the_openapi_document_renders_and_every_reference_resolves(client, db):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    schemas = document["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(schemas), refs - set(schemas)
    assert client.get("/docs").status_code == 200


def test_the_openapi_document_describes_recalls_evaluate_and_webhook_answers(client, db):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths["/v1/recalls"])
    evaluate = paths["/v1/evaluate"]["post"]
    assert {p["name"] for p in evaluate["parameters"]} == {"shop", "at"}
    forms = evaluate["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert forms[0] == {"$ref": "#/components/schemas/NormalizedRefundRequest"}
    assert forms[1]["properties"]["inspections"]["items"] == {
        "$ref": "#/components/schemas/InspectionIn"}
    webhook = paths["/webhooks/{shop}/{connector}"]["post"]["responses"]
    assert {"200", "202", "401", "404", "409", "422", "503"} <= set(webhook)



# At module level: the annotations are strings (`from __future__`), read in these globals.
async def _with_query(shop: str, request: Request, limit: int = 10) -> Response:
    return Response()


async def _plain(shop: str, request: Request) -> Response:
    return Response()


def test_an_unresolved_route_refuses_an_endpoint_with_parameters_it_would_not_resolve(
        ) -> None:
    router = APIRouter()
    router.add_api_route("/x/{shop}", _plain, methods=["POST"],
                         route_class_override=UnresolvedRoute)
    with pytest.raises(TypeError, match="only `request` and path parameters"):
        router.add_api_route("/y/{shop}", _with_query, methods=["POST"],
                             route_class_override=UnresolvedRoute)
