"""The OpenAPI document renders, every reference in it resolves, and it documents the
operator endpoints for recalls and the evaluate preview."""

from __future__ import annotations

import json
import re


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
