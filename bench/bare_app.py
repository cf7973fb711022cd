"""The baseline endpoint: one POST that reads a JSON body and answers 202.

Served exactly like `refundbridge serve` serves the real app: one uvicorn process,
`uvicorn.run(app, host, port, log_level="info")` (access log on, uvloop/httptools when
installed), so the ratio measures RefundBridge's own work and nothing about server setup.
"""

from __future__ import annotations

import argparse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(title="bare")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/webhooks/{shop}/{connector}")
async def receive(shop: str, connector: str, request: Request) -> JSONResponse:
    payload: Any = await request.json()
    return JSONResponse({"received": len(payload), "shop": shop, "connector": connector},
                        status_code=202)


if __name__ == "__main__":
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
