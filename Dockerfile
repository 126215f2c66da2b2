# syntax=docker/dockerfile:1
# impersonation-bot: one image, three roles (scripts/container-entrypoint): web, clock, release.
# Build and smoke-test with scripts/container-smoke; run with compose.yaml (docs/operations.md).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: the virtualenv with the project installed (editable, so alembic.ini and
# migrations/ stay beside the package, where bot/db/migrate.py looks for them) ------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
RUN python -m venv /app/.venv
# dependencies first, so a code change does not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir bot && touch bot/__init__.py \
    && /app/.venv/bin/pip install . \
    && /app/.venv/bin/pip uninstall --yes impersonation-bot \
    && rm -rf bot build ./*.egg-info
COPY alembic.ini policy.example.toml Procfile ./
COPY migrations ./migrations
COPY bot ./bot
COPY scripts/container-entrypoint ./scripts/container-entrypoint
RUN /app/.venv/bin/pip install --no-deps -e . \
    && /app/.venv/bin/python -m compileall -q bot migrations

# --- runtime: no compiler, no pip cache, not root ----------------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 impbot \
    && useradd --system --uid 10001 --gid impbot --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin impbot
WORKDIR /app
# owned by root and read-only to the app user: the running process cannot change its own code
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IMPERSONATION_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000 \
    IMPERSONATION_POLICY=/app/policy.toml
USER 10001:10001
EXPOSE 3000
# /healthz answers 200 when the database answers, without calling Slack (bot/web/app.py); the clock and
# release roles serve no HTTP, so compose.yaml disables this check for them
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=2)"]
ENTRYPOINT ["/app/scripts/container-entrypoint"]
CMD ["web"]
