# RefundBridge API image. The same image runs workers: `refundbridge worker`.
# Every package it installs is pinned by requirements.lock (`make lock` writes it).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY core core
COPY connectors connectors
COPY workers workers
COPY api api
COPY config config
COPY store store
COPY refundbridge refundbridge
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c requirements.lock .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 refundbridge
COPY --from=build /wheels /wheels
COPY --from=build /src/requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --no-index --find-links /wheels -c /tmp/requirements.lock \
      refundbridge && rm -rf /wheels /tmp/requirements.lock
USER refundbridge
WORKDIR /home/refundbridge
EXPOSE 8000
# The API's check. Workers serve no HTTP: compose.yaml gives them `refundbridge check --worker`.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
CMD ["refundbridge", "serve", "--host", "0.0.0.0", "--port", "8000"]
